"""Errors that cross layers. Stores translate client-library errors into these."""


class StoreUnavailableError(Exception):
    """A dependency (MongoDB, Redis, AWS) could not be reached or timed out: retry later."""
