"""The `groupbuy` command: a thin layer that parses, calls a wing, prints."""
