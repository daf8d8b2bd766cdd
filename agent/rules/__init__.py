"""Decision rules, one module per event type (see ``registry``)."""
