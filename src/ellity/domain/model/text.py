"""Rules for text Ellity stores: what goes into identifiers, names and notes."""

from __future__ import annotations

_LINE_BREAKS = frozenset("\t\n\r")


def has_control_characters(value: str, *, allow_line_breaks: bool = False) -> bool:
    """Whether ``value`` holds C0 control characters (NUL, ESC ...) or DEL.

    Identifiers and names never hold them (PostgreSQL cannot even store NUL); free text such
    as a note may hold tabs and line breaks when ``allow_line_breaks`` is set.
    """
    return any(
        (ord(ch) < 32 or ch == "\x7f") and not (allow_line_breaks and ch in _LINE_BREAKS)
        for ch in value
    )
