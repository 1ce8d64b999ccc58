"""Ecomail's response shapes, quirks kept (ecomail-api.md §4, §6, §9.8)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.ecomail_emulator.model import Account, Contact, MailingList, Member

LIST_SETTINGS = (
    "sub_success_page",
    "sub_confirmed_page",
    "unsub_page",
    "conf_subject",
    "conf_message",
)


def iso(at: datetime | None) -> str | None:
    """Membership times: ``2024-11-27T11:18:00.000000Z``."""
    return None if at is None else at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def plain(at: datetime) -> str:
    """Person times: ``2015-01-21 10:50:04``."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def php_map(mapping: dict[str, Any] | None) -> dict[str, Any] | list[Any]:
    """PHP encodes an empty associative array as ``[]``."""
    return dict(mapping) if mapping else []


def list_summary(lst: MailingList) -> dict[str, Any]:
    return {
        "id": lst.id,
        "name": lst.name,
        "from_name": lst.from_name,
        "from_email": lst.from_email,
        "reply_to": lst.reply_to,
    }


def list_flat(lst: MailingList) -> dict[str, Any]:
    """PUT /lists/{id}: no ``list`` wrapper, an int id, no fields or counters."""
    return {
        **list_summary(lst),
        **{name: lst.settings.get(name) for name in LIST_SETTINGS[:3]},
        "double_optin": lst.double_optin,
        **{name: lst.settings.get(name) for name in LIST_SETTINGS[3:]},
    }


def list_detail(lst: MailingList) -> dict[str, Any]:
    """GET /lists/{id}: wrapped in ``list``, the id a string, counters beside it."""
    counts = lst.counts()
    detail = list_flat(lst)
    detail["id"] = str(lst.id)
    detail["custom_fields"] = php_map({key: dict(d) for key, d in lst.fields.items()})
    detail["groups"] = []
    detail["segments"] = []
    detail["active_subscribers"] = counts["subscribed"]
    detail["created"] = f"{lst.created.day}.{lst.created.month}.{lst.created.year}"
    return {"list": detail, "subscribers": counts}


def person(contact: Contact, *, hard_bounce_key: str) -> dict[str, Any]:
    """subscribe answers ``bounced_hard``, update-subscriber answers ``bounce_hard``."""
    return {
        "id": contact.id,
        "name": contact.name,
        "surname": contact.surname,
        "email": contact.email,
        "gender": contact.gender,
        "bounce_soft": 0,
        hard_bounce_key: 0 if hard_bounce_key == "bounced_hard" else None,
        "bounce_message": None,
        "inserted_at": plain(contact.inserted_at),
    }


def membership_row(member: Member, lst: MailingList) -> dict[str, Any]:
    """DELETE /lists/{id}/unsubscribe answers the membership row."""
    return {
        "id": member.id,
        "list_id": lst.id,
        "email": member.email,
        "status": member.status,
        "subscribed_at": iso(member.subscribed_at),
        "unsubscribed_at": iso(member.unsubscribed_at),
        "custom_fields": php_map(member.custom_fields),
        "source": member.source,
    }


def member_detail(member: Member, lst: MailingList) -> dict[str, Any]:
    """GET /lists/{id}/subscriber/{email}: person and membership merged in one object."""
    contact = member.contact
    return {
        "subscriber": {
            "id": contact.id,
            "name": contact.name,
            "surname": contact.surname,
            "email": contact.email,
            "company": contact.get("company"),
            "city": contact.get("city"),
            "country": contact.get("country"),
            "phone": contact.get("phone"),
            "gender": contact.gender,
            "tags": list(contact.tags or []),
            "rating": 0,
            "list_id": lst.id,
            "status": member.status,
            "subscribed_at": iso(member.subscribed_at),
            "unsubscribed_at": iso(member.unsubscribed_at),
            "custom_fields": php_map(member.custom_fields),
            "groups": member.groups,
            "source": member.source,
        }
    }


def subscriber_everywhere(account: Account, contact: Contact) -> dict[str, Any]:
    """GET /subscribers/{email}: ``lists`` keyed by the list id as a string."""
    lists = {}
    for lst in account.lists.values():
        member = lst.members.get(contact.email)
        if member is not None:
            lists[str(lst.id)] = {
                "id": member.id,
                "list_id": lst.id,
                "email": contact.email,
                "status": member.status,
                "subscribed_at": iso(member.subscribed_at),
                "source": member.source,
            }
    return {
        "subscriber": {
            "name": contact.name,
            "surname": contact.surname,
            "email": contact.email,
            "gender": contact.gender,
            "bounce_soft": 0,
            "bounced_hard": 0,
            "inserted_at": plain(contact.inserted_at),
            "rating": 0,
            "country": contact.get("country"),
            "tags": list(contact.tags or []),
            "lists": lists,
        }
    }


def page_item(member: Member, lst: MailingList) -> dict[str, Any]:
    contact = member.contact
    return {
        "id": member.id,
        "list_id": lst.id,
        "email": contact.email,
        "status": member.status,
        "subscribed_at": iso(member.subscribed_at),
        "unsubscribed_at": iso(member.unsubscribed_at),
        "custom_fields": php_map(member.custom_fields),
        "groups": member.groups,
        "source": member.source,
        "subscriber": {
            "id": contact.id,
            "name": contact.name,
            "surname": contact.surname,
            "email": contact.email,
            "gender": contact.gender,
            "company": contact.get("company"),
            "city": contact.get("city"),
            "country": contact.get("country"),
            "phone": contact.get("phone"),
        },
    }


def paginator(
    items: list[dict[str, Any]], *, page: int, per_page: int, total: int, path: str
) -> dict[str, Any]:
    """Laravel's LengthAwarePaginator."""
    last_page = max(1, -(-total // per_page))
    first = (page - 1) * per_page + 1
    return {
        "current_page": page,
        "data": items,
        "first_page_url": f"{path}?page=1",
        "from": first if items else None,
        "last_page": last_page,
        "last_page_url": f"{path}?page={last_page}",
        "next_page_url": f"{path}?page={page + 1}" if page < last_page else None,
        "path": path,
        "per_page": per_page,
        "prev_page_url": f"{path}?page={page - 1}" if page > 1 else None,
        "to": first + len(items) - 1 if items else None,
        "total": total,
    }
