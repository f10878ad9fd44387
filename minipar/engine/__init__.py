"""The engine process: registers with a controller and runs what clients send it."""
