"""Rules for text Ellity stores: what goes into identifiers, names and notes."""

from __future__ import annotations

import unicodedata

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


def search_fold(value: str) -> str:
    """The form text is searched in, as Czechs type it: without case and without accents
    (``Růžičková`` → ``ruzickova``, ``ŠTĚPÁN`` → ``stepan``). Letters with no accent to drop
    (``ł``, ``ø``) stay as they are; ``ß`` becomes ``ss``, as in case-folding."""
    decomposed = unicodedata.normalize("NFKD", value.casefold())
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return unicodedata.normalize("NFC", bare)
