"""Where images come from: walking folders, listing URLs and containers, reading bytes."""
