"""The client side: Client, views and AsyncResult."""
