"""The controller process: hub, scheduler, heartbeats and the task database."""
