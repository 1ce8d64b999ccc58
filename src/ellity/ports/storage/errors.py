"""Errors the storage ports may raise."""

from __future__ import annotations


class UniqueViolation(Exception):
    """A value that must be unique is taken. ``field`` names it (``email``, ``slug`` ...)."""

    def __init__(self, field: str) -> None:
        super().__init__(f"duplicate {field}")
        self.field = field


class TransientConflict(Exception):
    """The database aborted the transaction to resolve a conflict with a concurrent one (a
    deadlock, a serialization failure). Nothing of it was stored; the same transaction, run
    again from the start, is expected to succeed (``common.retried_on_conflict``)."""
