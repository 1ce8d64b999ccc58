"""What a write asks for: one ``subscriber_data`` item, checked and normalised.

Validation failures become Laravel-style 422 answers, ``{"message", "errors": {field: [..]}}``.
The status (422) and the wording are assumptions: ecomail-api.md §3 found no example.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Any

import msgspec

UNSET = msgspec.UNSET
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
#: The person's own fields (shared by all lists of the account), as the docs name them.
PERSON_FIELDS = (
    "name", "surname", "gender", "company", "city", "street", "zip", "country", "phone",
    "pretitle", "surtitle", "birthday", "nameday", "vokativ", "vokativ_s",
)  # fmt: skip
GENDERS = frozenset({"male", "female", None})
TAG_LIMIT = 50
TAGS_LIMIT = 2000
STATUSES = frozenset({1, 2, 3, 4, 5, 6})
BULK_STATUSES = frozenset({1, 2, 4})


class Invalid(Exception):
    """A 422 answer: the request can never work as sent."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "errors": {self.field: [self.message]}}


# Bodies are decoded straight into these (msgspec), which halves the cost of a 2 MB bulk call
# against plain dicts. ``Any`` leaves the checking and its messages to the code below.


class TypedValue(msgspec.Struct, gc=False):
    """A custom field sent as ``{"value": ..., "type": ...}``."""

    value: Any = None
    type: Any = None


FieldValue = TypedValue | list[Any] | str | int | float | bool | None


class SubscriberData(msgspec.Struct, gc=False):
    email: Any = None
    name: Any = UNSET
    surname: Any = UNSET
    gender: Any = UNSET
    company: Any = UNSET
    city: Any = UNSET
    street: Any = UNSET
    zip: Any = UNSET
    country: Any = UNSET
    phone: Any = UNSET
    pretitle: Any = UNSET
    surtitle: Any = UNSET
    birthday: Any = UNSET
    nameday: Any = UNSET
    vokativ: Any = UNSET
    vokativ_s: Any = UNSET
    status: Any = None
    custom_fields: dict[str, FieldValue] | list[Any] | None = None
    tags: Any = None
    groups: Any = None
    source: Any = None


class WriteBody(msgspec.Struct, gc=False):
    """The body of every write to a list (each endpoint reads its own part)."""

    subscriber_data: SubscriberData | list[SubscriberData] | None = None
    email: Any = None
    update_existing: Any = UNSET
    skip_confirmation: Any = UNSET
    resubscribe: Any = UNSET
    trigger_autoresponders: Any = UNSET
    trigger_notification: Any = UNSET
    allow_resubscribe: Any = UNSET


_decode_write = msgspec.json.Decoder(WriteBody).decode
_person_values = operator.attrgetter(*PERSON_FIELDS)
_NOTHING_MORE = (UNSET,) * (len(PERSON_FIELDS) - 2)


def write_body(raw: bytes | WriteBody | dict[str, Any]) -> WriteBody:
    """A write's body from the wire (or, for Python callers, a dict)."""
    if isinstance(raw, WriteBody):
        return raw
    try:
        if isinstance(raw, dict):
            return msgspec.convert(raw, WriteBody)
        return _decode_write(raw) if raw.strip() else WriteBody()
    except msgspec.ValidationError as exc:
        message, _, path = str(exc).partition(" - at `$")
        field = re.sub(r"\[(\d+)\]", r".\1", path.rstrip("`")).lstrip(".") or "body"
        raise Invalid(field, f"The {field} field is invalid: {message}.") from None
    except msgspec.DecodeError:
        raise Invalid("body", "The request body is not valid JSON.") from None


@dataclass(slots=True)
class SubscriberInput:
    email: str
    person: dict[str, Any]  # only the fields the item carries
    status: int | None
    custom_fields: Any  # as sent; checked when merged (tests.ecomail_emulator.custom_fields)
    tags: list[str] | None
    groups: dict[str, Any] | None
    source: str | None
    where: str  # the item's place in the request, for error keys


def normalise_email(raw: Any, where: str) -> str:
    if raw is None or raw == "":
        raise Invalid(where, f"The {where} field is required.")
    if not isinstance(raw, str):
        raise Invalid(where, f"The {where} field must be a string.")
    email = raw.strip().lower()
    if len(email) > 254 or not EMAIL.fullmatch(email):
        raise Invalid(where, f"The {where} field must be a valid email address.")
    return email


def parse_subscriber(
    raw: SubscriberData | None,
    where: str,
    *,
    email: str | None = None,
    statuses: frozenset[int] = STATUSES,
) -> SubscriberInput:
    """One item; ``email`` is given from outside the item on update-subscriber."""
    if raw is None:
        raise Invalid(where, f"The {where} field is required.")
    if email is None:
        email = normalise_email(raw.email, f"{where}.email")
    values = _person_values(raw)
    if values[2:] == _NOTHING_MORE:  # the usual item: at most a name and a surname
        person = {}
        if values[0] is not UNSET:
            person["name"] = values[0]
        if values[1] is not UNSET:
            person["surname"] = values[1]
    else:
        person = {n: v for n, v in zip(PERSON_FIELDS, values, strict=True) if v is not UNSET}
    if person.get("gender") not in GENDERS:
        raise Invalid(f"{where}.gender", f"The selected {where}.gender is invalid.")
    status = raw.status
    if status is not None and (type(status) is not int or status not in statuses):
        raise Invalid(f"{where}.status", f"The selected {where}.status is invalid.")
    groups = raw.groups
    if groups is not None and not isinstance(groups, dict):
        raise Invalid(f"{where}.groups", f"The {where}.groups field must be an object.")
    tags = raw.tags
    if tags is not None:
        tags = _tags(tags, f"{where}.tags")
    source = raw.source
    return SubscriberInput(
        email,
        person,
        status,
        raw.custom_fields,
        tags,
        groups,
        source if isinstance(source, str) else None,
        where,
    )


def _tags(raw: Any, where: str) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(tag, str) for tag in raw):
        raise Invalid(where, f"The {where} field must be an array of strings.")
    # Docs: ≤ 50 characters a tag, ≤ 2000 in total; refusing beyond that is an assumption.
    if any(len(tag) > TAG_LIMIT for tag in raw) or sum(map(len, raw)) > TAGS_LIMIT:
        raise Invalid(where, f"The {where} field is too long.")
    return list(raw)
