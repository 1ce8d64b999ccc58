"""Custom fields (merge tags) on writes, ecomail-api.md §5.

- A key is ``strip().lower()``-ed; two keys of one subscriber meeting after that are refused.
- A value is a scalar or ``{"value": ..., "type": "string"|"int"|"date"}``. Other types are
  refused (assumption: only these three were ever seen).
- The list's field definition is made by the first write of the key, with the given type
  (default ``string``) and ``name`` = key (unconfirmed); a later write cannot change the type.
- Values are stored as given, except that an ``int`` field stores an int.
- A write updates the keys it gives and keeps the member's others.
- Docs: ≤ 5000 characters in total. Counted as ``len(json.dumps(fields))`` of the subscriber's
  merged fields in that list, and refused with 422 (both assumptions).
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec

from tests.ecomail_emulator.model import MailingList
from tests.ecomail_emulator.payload import Invalid, TypedValue

FIELD_TYPES = frozenset({"string", "int", "date"})
LIMIT = 5000
INT = re.compile(r"[+-]?\d+")
_encode = msgspec.json.Encoder().encode


class FieldWriter:
    """Merges items' fields for one request; definitions new to the list are kept aside and
    made by ``commit()`` once the whole request has been checked."""

    def __init__(self, lst: MailingList) -> None:
        self.lst = lst
        self.new: dict[str, tuple[str, str]] = {}  # key -> (key, type) made by this request
        # the names of an item's fields, as sent -> per field (the key members share, is int);
        # the items of a bulk call mostly send the same names
        self._shapes: dict[tuple[str, ...], list[tuple[str, bool]]] = {}

    def merge(self, base: dict[str, Any], raw: Any, where: str) -> dict[str, Any]:
        if not raw:  # absent, {} or PHP's empty array []
            return base
        if type(raw) is not dict:
            raise Invalid(f"{where}.custom_fields", "The custom_fields field must be an object.")
        names = tuple(raw)
        shape = self._shapes.get(names)
        if shape is None:
            shape = self._shapes[names] = self._shape(raw, where)
        merged = base.copy()
        for (shared, is_int), item in zip(shape, raw.values(), strict=True):
            if type(item) is TypedValue:
                value, kind = item.value, item.type
                if kind is not None and kind not in FIELD_TYPES:
                    raise _bad(where, shared, f"Unknown custom field type {kind!r}.")
            else:
                value = item
            if is_int and type(value) is not int and value is not None:
                value = _integer(value, where, shared)
            merged[shared] = value
        # exact count only near the limit: json.dumps writes ≤ 3 characters per UTF-8 byte of
        # the compact form, plus ", " and ": " spacing
        if 3 * len(_encode(merged)) + 2 * len(merged) > LIMIT and len(json.dumps(merged)) > LIMIT:
            raise Invalid(
                f"{where}.custom_fields",
                "The custom_fields may not be greater than 5000 characters.",
            )
        return merged

    def _shape(self, raw: dict[str, Any], where: str) -> list[tuple[str, bool]]:
        shape: list[tuple[str, bool]] = []
        given: set[str] = set()
        for name, item in raw.items():
            kind = item.type if type(item) is TypedValue else None
            key, shared, field_type = self._definition(name, kind, where)
            if key in given:
                raise _bad(where, key, f"The custom_fields field has a duplicate key {key!r}.")
            given.add(key)
            shape.append((shared, field_type == "int"))
        return shape

    def _definition(self, name: str, kind: str | None, where: str) -> tuple[str, str, str]:
        key = name.strip().lower()
        if not key:
            raise _bad(where, key, "The custom_fields field has an empty key.")
        definition = self.lst.known_fields.get(key) or self.new.get(key)
        if definition is None:
            made = self.lst.fields.get(key)  # a definition set up by a test
            definition = self.new[key] = (key, made["type"] if made else kind or "string")
        return key, definition[0], definition[1]

    def commit(self) -> None:
        for key, kind in self.new.values():
            self.lst.define_field(key, kind)
        self.new.clear()


def _integer(value: Any, where: str, key: str) -> int:
    if isinstance(value, str) and INT.fullmatch(value.strip()):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise _bad(where, key, f"The custom field {key} must be an integer.")


def _bad(where: str, key: str, message: str) -> Invalid:
    return Invalid(f"{where}.custom_fields.{key}", message)
