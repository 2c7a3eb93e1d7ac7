"""From the broker to a durable commit and a hub-ack: decode, validate, dedup, store, detect, acknowledge."""
