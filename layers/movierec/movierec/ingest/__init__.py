"""Applying stream events: decode and validate, route, store, and update real-time state."""
