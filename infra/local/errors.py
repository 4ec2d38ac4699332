"""Errors the local tooling reports to a person as one line."""


class UsageError(Exception):
    """A problem the user can fix (bad path, busy port, unknown function): one line, exit status 2."""
