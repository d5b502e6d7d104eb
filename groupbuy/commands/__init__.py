"""One module per `groupbuy` sub-command (modules starting with `_` are helpers)."""
