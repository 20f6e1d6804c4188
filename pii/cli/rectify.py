"""`lethe` commands for the other rights (filled in by issue 14)."""
from __future__ import annotations


def add_parsers(sub, add_identifier_args) -> None:
    """Add this module's sub-commands to the `lethe` parser."""
