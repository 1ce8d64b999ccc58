"""Ecomail's JSON, both ways: the bodies Ellity sends and the answers it reads.

Reading is strict about what Ellity needs and lenient about the rest (see
/work/shared/ecomail-api.md for the shapes and their quirks). A shape Ellity cannot use raises
``Unreadable``; the client turns it into ``MarketingUnavailable``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from ellity.ports.marketing import (
    ContactData,
    ContactList,
    ListDetail,
    MemberPage,
    Membership,
    SubscriptionStatus,
    TrackerEvent,
)

logger = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER = 60.0  # seconds, when a 429 comes without a usable Retry-After
MAX_RETRY_AFTER = 86400.0  # a nonsense Retry-After cannot stop a key for longer than a day
MESSAGE_LIMIT = 300  # characters of Ecomail's own words kept in an error message


class Unreadable(ValueError):
    """A 2xx answer whose body is not the JSON Ellity expects."""


# --- what Ellity sends ------------------------------------------------------------------


def subscriber(contact: ContactData) -> dict[str, Any]:
    """One ``subscriber_data`` item. Never a ``status``: an unsubscribed member stays so."""
    item: dict[str, Any] = {"email": contact.email}
    if contact.first_name:
        item["name"] = contact.first_name
    if contact.last_name:
        item["surname"] = contact.last_name
    if contact.custom_fields:
        item["custom_fields"] = {
            key: {"value": typed.value, "type": typed.type}
            for key, typed in contact.custom_fields.items()
        }
    return item


def subscribe_bulk(contacts: Sequence[ContactData]) -> dict[str, Any]:
    return {
        "subscriber_data": [subscriber(contact) for contact in contacts],
        "update_existing": True,
        "resubscribe": False,
        "trigger_autoresponders": False,
    }


def update_bulk(contacts: Sequence[ContactData]) -> dict[str, Any]:
    return {
        "subscriber_data": [subscriber(contact) for contact in contacts],
        "allow_resubscribe": False,
    }


def unsubscribe(email: str) -> dict[str, Any]:
    """The JSON body of ``DELETE /lists/{id}/unsubscribe``."""
    return {"email": email}


def tracker_event(event: TrackerEvent) -> dict[str, Any]:
    value = json.dumps(event.value, ensure_ascii=False, separators=(",", ":"))
    return {
        "event": {
            "email": event.email,
            "category": event.category,
            "action": event.action,
            "label": event.label,
            "value": value,
        }
    }


# --- what Ellity reads ------------------------------------------------------------------


def contact_lists(body: Any) -> tuple[list[ContactList], int | None]:
    """The lists on one page and, for a paginated answer, the last page's number."""
    last_page: int | None = None
    items = body
    if isinstance(body, Mapping) and "data" in body:
        items = body["data"]
        last_page = _int(body.get("last_page", 1))
    if not isinstance(items, list):
        raise Unreadable("the lists are not an array")
    lists = [ContactList(id=str(_field(item, "id")), name=_text(item, "name")) for item in items]
    return lists, last_page


def list_detail(body: Any) -> ListDetail:
    detail = body.get("list", body) if isinstance(body, Mapping) else None
    if not isinstance(detail, Mapping):
        raise Unreadable("no list in the answer")
    fields = detail.get("custom_fields") or {}  # an empty PHP array arrives as []
    if not isinstance(fields, Mapping):
        raise Unreadable("custom_fields is neither an object nor empty")
    types = {}
    for key, definition in fields.items():
        kind = definition.get("type") if isinstance(definition, Mapping) else None
        types[str(key).strip().lower()] = str(kind or "string")
    return ListDetail(id=str(_field(detail, "id")), name=_text(detail, "name"), custom_fields=types)


def membership(body: Any, email: str) -> Membership:
    member = body.get("subscriber", body) if isinstance(body, Mapping) else None
    if not isinstance(member, Mapping):
        raise Unreadable("no subscriber in the answer")
    return _membership(member, str(member.get("email") or email), null=None)


def member_page(body: Any, *, per_page: int) -> MemberPage:
    """A page of ``GET /lists/{id}/subscribers`` (Laravel's paginator). ``last_page`` is
    computed from ``total`` and ``per_page`` when the answer lacks it; a null field value
    reads as ``""``."""
    if not isinstance(body, Mapping) or not isinstance(body.get("data"), list):
        raise Unreadable("the members are not a paginated array")
    members = []
    for item in body["data"]:
        if not isinstance(item, Mapping):
            raise Unreadable("a member is not an object")
        members.append(_membership(item, str(_field(item, "email")), null=""))
    total = _int(_field(body, "total"))
    raw_last = body.get("last_page")
    last_page = -(-total // per_page) if raw_last is None else _int(raw_last)
    page = _int(body.get("current_page", 1))
    if total < 0 or page < 1:
        raise Unreadable(f"page {page} of {total} members")
    return MemberPage(members=members, page=page, last_page=max(1, last_page), total=total)


def _membership(member: Mapping[str, Any], email: str, *, null: str | None) -> Membership:
    """A membership object; a null field value is left out (``null=None``) or read as
    ``null``."""
    try:
        status = SubscriptionStatus(_int(_field(member, "status")))
    except ValueError:
        raise Unreadable(f"unknown subscription status {member.get('status')!r}") from None
    fields = member.get("custom_fields") or {}  # an empty PHP array arrives as []
    if not isinstance(fields, Mapping):
        raise Unreadable("custom_fields is neither an object nor empty")
    values: dict[str, str | int] = {}
    for key, raw in fields.items():
        value = raw.get("value") if isinstance(raw, Mapping) else raw
        if isinstance(value, str | int) and not isinstance(value, bool):
            values[str(key).strip().lower()] = value
        elif value is not None:
            values[str(key).strip().lower()] = str(value)
        elif null is not None:
            values[str(key).strip().lower()] = null
    return Membership(
        email=email,
        status=status,
        subscribed_at=timestamp(member.get("subscribed_at")),
        unsubscribed_at=timestamp(member.get("unsubscribed_at")),
        custom_fields=values,
    )


def counter(body: Any, name: str) -> int:
    """A bulk call's count. Missing counts as 0 (and is logged) rather than unreadable: the
    contacts were accepted, and calling again would only send them again."""
    if not isinstance(body, Mapping):
        raise Unreadable(f"no {name} in the answer")
    if name not in body:
        logger.warning("Ecomail's answer has no %r; counted as 0", name)
        return 0
    return _int(body[name])


def timestamp(raw: Any) -> datetime | None:
    """Both of Ecomail's styles, ``2015-01-21 10:50:04`` and ``2024-11-27T11:18:00.000000Z``;
    a time without a zone is UTC. Anything else (``null``, ``""``, garbage) is ``None``."""
    if not isinstance(raw, str) or not raw.strip():
        return None
    try:
        parsed = datetime.fromisoformat(raw.strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def retry_after(header: str | None, *, now: datetime) -> float:
    """``Retry-After`` in seconds or as an HTTP date; 60 s when missing or unreadable."""
    if not header or not header.strip():
        return DEFAULT_RETRY_AFTER
    text = header.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(text) - now).total_seconds()
        except (TypeError, ValueError, IndexError):
            return DEFAULT_RETRY_AFTER
    if not math.isfinite(seconds):
        return DEFAULT_RETRY_AFTER
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def is_wrong_key(body: Any) -> bool:
    """Ecomail's answer to a bad key, whatever status it comes with."""
    return (
        isinstance(body, Mapping)
        and isinstance(body.get("message"), str)
        and body["message"].strip().lower() == "wrong api key"
    )


def names_the_subscriber(body: Any) -> bool:
    """Whether a 404's message says the contact is what is missing ("Subscriber not found",
    "Email not in list"). Ecomail's 404 bodies are unconfirmed: this reads the words, not one
    exact sentence."""
    message = body.get("message") if isinstance(body, Mapping) else None
    if not isinstance(message, str):
        return False
    words = message.lower()
    return any(word in words for word in ("subscriber", "contact", "e-mail", "email"))


def refusal(body: Any, text: str) -> str:
    """Ecomail's reason for a 4xx, from ``message`` and ``errors``, clipped."""
    parts: list[str] = []
    if isinstance(body, Mapping):
        message = body.get("message") or body.get("error")
        if isinstance(message, str) and message.strip():
            parts.append(message.strip())
        parts.extend(_error_lines(body.get("errors")))
    elif text.strip() and not text.lstrip().startswith("<"):  # plain text, not an HTML page
        parts.append(text.strip())
    return clip(" ".join(parts))


def _error_lines(errors: Any) -> list[str]:
    if isinstance(errors, str):
        return [errors.strip()] if errors.strip() else []
    if isinstance(errors, Mapping):
        lines = []
        for name, problems in errors.items():
            said = problems if isinstance(problems, list) else [problems]
            lines.append(f"{name}: {' '.join(str(p) for p in said)}")
        return lines
    if isinstance(errors, list):
        return [str(e) for e in errors]
    return []


def clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1].rstrip() + "…"


def _field(item: Any, name: str) -> Any:
    if not isinstance(item, Mapping) or item.get(name) is None:
        raise Unreadable(f"{name} is missing")
    return item[name]


def _text(item: Any, name: str) -> str:
    value = item.get(name) if isinstance(item, Mapping) else None
    return "" if value is None else str(value)


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise Unreadable(f"{value!r} is not a number")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise Unreadable(f"{value!r} is not a number") from None
