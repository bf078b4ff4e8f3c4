"""ViaRah."""
