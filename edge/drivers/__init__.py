"""Device drivers: each reads one kind of bus and returns new readings with the cursor to store with them."""
