"""The projector: consumes the location events and keeps the current-position table."""
