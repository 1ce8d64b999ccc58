"""The API's writes to a list, with Ecomail's rules (ecomail-api.md §5, §6, §7, §9).

Every write validates its whole request first and then applies it, so a 422 changes nothing.
Callers hold the emulator's lock.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from tests.ecomail_emulator.custom_fields import FieldWriter
from tests.ecomail_emulator.model import (
    SUBSCRIBED,
    UNCONFIRMED,
    UNSUBSCRIBED,
    Account,
    MailingList,
    Member,
)
from tests.ecomail_emulator.payload import (
    BULK_STATUSES,
    UNSET,
    Invalid,
    SubscriberData,
    SubscriberInput,
    WriteBody,
    normalise_email,
    parse_subscriber,
    write_body,
)
from tests.ecomail_emulator.shapes import membership_row, person

BULK_LIMIT = 3000  # docs: items beyond this are silently dropped
EVENT_VALUE_LIMIT = 20000  # docs: characters after encoding; refused with 422 (assumption)
TRUE = (True, 1, "1", "true")
FALSE = (False, 0, "0", "false", None)


class NotFound(Exception):
    """A 404 answer ``{"message": ...}``."""


Body = bytes | WriteBody | dict[str, Any]


def subscribe(lst: MailingList, raw: Body) -> dict[str, Any]:
    """POST /lists/{id}/subscribe. Flags default to false."""
    body = write_body(raw)
    item = accepted(lst, parse_subscriber(one_item(body), "subscriber_data"), "subscriber_data")
    update_existing = flag(body, "update_existing", default=False)
    skip_confirmation = flag(body, "skip_confirmation", default=False)
    resubscribe = flag(body, "resubscribe", default=False)
    flag(body, "trigger_autoresponders", default=False)  # accepted; nothing to trigger here
    flag(body, "trigger_notification", default=False)
    writer = FieldWriter(lst)
    member = lst.members.get(item.email)
    now = lst.emulator.now()
    if member is None:
        fields = writer.merge({}, item.custom_fields, item.where)
        writer.commit()
        status = item.status or SUBSCRIBED
        # The list's double opt-in setting gates the DOI status (docs are unconditional).
        if status == SUBSCRIBED and lst.double_optin and not skip_confirmation:
            status = UNCONFIRMED
        member = insert(lst, item, status, fields, now)
        return person(member.contact, hard_bounce_key="bounced_hard")
    if update_existing:
        fields = writer.merge(member.custom_fields, item.custom_fields, item.where)
        writer.commit()
        update_data(member, item, fields)
    else:
        FieldWriter(lst).merge({}, item.custom_fields, item.where)  # refused all the same
    if member.status == UNSUBSCRIBED:
        # An explicit status wins: resubscribe brings the member back only to status 1.
        if resubscribe and (item.status or SUBSCRIBED) == SUBSCRIBED:
            set_status(lst, member, SUBSCRIBED, now)
    elif update_existing and item.status is not None:
        set_status(lst, member, item.status, now)
    answer = person(member.contact, hard_bounce_key="bounced_hard")
    answer["already_subscribed"] = True
    return answer


def subscribe_bulk(lst: MailingList, raw: Body) -> dict[str, Any]:
    """POST /lists/{id}/subscribe-bulk: ≤ 3000 items, no double opt-in, update_existing
    defaults to true. ``inserts`` counts the items added or updated (assumption)."""
    body = write_body(raw)
    update_existing = flag(body, "update_existing", default=True)
    resubscribe = flag(body, "resubscribe", default=False)
    flag(body, "trigger_autoresponders", default=False)
    writer = FieldWriter(lst)
    prepared: list[tuple[SubscriberInput, dict[str, Any] | None]] = []
    staged: dict[str, dict[str, Any]] = {}  # an email met twice in one request merges twice
    for position, data in enumerate(items_of(body)):
        where = f"subscriber_data.{position}"
        item = accepted(lst, parse_subscriber(data, where, statuses=BULK_STATUSES), where)
        member = lst.members.get(item.email)
        fields = None
        if (member is not None or item.email in staged) and not update_existing:
            FieldWriter(lst).merge({}, item.custom_fields, item.where)  # refused all the same
        elif item.email in staged:
            fields = writer.merge(staged[item.email], item.custom_fields, item.where)
        elif member is None:
            fields = writer.merge({}, item.custom_fields, item.where)
        else:
            fields = writer.merge(member.custom_fields, item.custom_fields, item.where)
        if fields is not None:
            staged[item.email] = fields
        prepared.append((item, fields))
    writer.commit()
    now = lst.emulator.now()
    inserts = 0
    for item, fields in prepared:
        member = lst.members.get(item.email)
        if member is None:
            insert(lst, item, item.status or SUBSCRIBED, fields or {}, now)
        elif update_existing:
            update_data(member, item, fields if fields is not None else member.custom_fields)
            if member.status == UNSUBSCRIBED:  # not re-subscribed unless asked to
                if resubscribe and (item.status or SUBSCRIBED) == SUBSCRIBED:
                    set_status(lst, member, SUBSCRIBED, now)
            elif item.status is not None:
                set_status(lst, member, item.status, now)
        elif resubscribe and member.status == UNSUBSCRIBED and item.status in (None, SUBSCRIBED):
            set_status(lst, member, SUBSCRIBED, now)
        else:
            continue
        inserts += 1
    return {"inserts": inserts}


def update_subscriber(lst: MailingList, raw: Body) -> dict[str, Any]:
    """PUT /lists/{id}/update-subscriber. An explicit status is applied as given.
    An email not in the list answers 404 (assumption)."""
    body = write_body(raw)
    email = normalise_email(body.email, "email")
    data = one_item(body) if body.subscriber_data is not None else SubscriberData()
    item = accepted(lst, parse_subscriber(data, "subscriber_data", email=email), "email")
    member = lst.members.get(item.email)
    if member is None:
        raise NotFound("Subscriber not found")
    writer = FieldWriter(lst)
    fields = writer.merge(member.custom_fields, item.custom_fields, item.where)
    writer.commit()
    update_data(member, item, fields)
    if item.status is not None:
        set_status(lst, member, item.status, lst.emulator.now())
    return person(member.contact, hard_bounce_key="bounce_hard")


def update_subscriber_bulk(lst: MailingList, raw: Body) -> dict[str, Any]:
    """PUT /lists/{id}/update-subscriber-bulk: ≤ 3000 items. Emails not in the list are
    skipped and not counted (assumption). Status 1 brings back an unsubscribed member only
    with ``allow_resubscribe``; other explicit statuses are applied."""
    body = write_body(raw)
    allow_resubscribe = flag(body, "allow_resubscribe", default=False)
    writer = FieldWriter(lst)
    prepared: list[tuple[SubscriberInput, Member, dict[str, Any]]] = []
    staged: dict[str, dict[str, Any]] = {}
    for position, data in enumerate(items_of(body)):
        where = f"subscriber_data.{position}"
        item = accepted(lst, parse_subscriber(data, where, statuses=BULK_STATUSES), where)
        member = lst.members.get(item.email)
        if member is None:
            continue
        fields = writer.merge(
            staged.get(item.email, member.custom_fields), item.custom_fields, item.where
        )
        staged[item.email] = fields
        prepared.append((item, member, fields))
    writer.commit()
    now = lst.emulator.now()
    for item, member, fields in prepared:
        update_data(member, item, fields)
        if item.status is None or item.status == member.status:
            continue
        if member.status == UNSUBSCRIBED and item.status == SUBSCRIBED and not allow_resubscribe:
            continue
        set_status(lst, member, item.status, now)
    return {"updates": len(prepared)}


def unsubscribe(lst: MailingList, raw: Body) -> dict[str, Any]:
    """DELETE /lists/{id}/unsubscribe (JSON body). Never fires the webhook (support, §8).
    An email not in the list answers 404 (assumption)."""
    email = normalise_email(write_body(raw).email, "email")
    member = lst.members.get(email)
    if member is None:
        raise NotFound("Subscriber not found")
    if member.status != UNSUBSCRIBED:
        lst.move(member, UNSUBSCRIBED)
        member.unsubscribed_at = lst.emulator.now()
    return membership_row(member, lst)


def accepted(lst: MailingList, item: SubscriberInput, where: str) -> SubscriberInput:
    """The item, unless the test made the list refuse its email (``MailingList.refused``)."""
    message = lst.refused.get(item.email)
    if message is not None:
        raise Invalid(f"{where}.email" if where != "email" else where, message)
    return item


def track_event(account: Account, body: dict[str, Any]) -> dict[str, Any]:
    """POST /tracker/events. The email must be a contact of the account (a member of any of
    its lists); otherwise 404 (status and body are assumptions)."""
    event = body.get("event")
    if not isinstance(event, dict):
        raise Invalid("event", "The event field is required.")
    email = normalise_email(event.get("email"), "event.email")
    value = event.get("value")
    if value is not None and not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if value is not None and len(value) > EVENT_VALUE_LIMIT:
        raise Invalid("event.value", "The event.value may not be greater than 20000 characters.")
    if not account.has_contact(email):
        raise NotFound("Subscriber not found")
    stored = {
        "id": next(account.emulator.event_ids),
        "email": email,
        "category": event.get("category"),
        "action": event.get("action"),
        "label": event.get("label"),
        "property": event.get("property"),
        "value": value,
    }
    account.events.append(stored)
    return dict(stored)


# --- shared steps ------------------------------------------------------------------------


def insert(
    lst: MailingList, item: SubscriberInput, status: int, fields: dict[str, Any], now: datetime
) -> Member:
    member = lst.emulator.new_member(lst, item.email, status, fields, now)
    member.source = item.source or "api"
    member.groups = item.groups
    member.contact.update(item.person)
    if item.tags is not None:
        member.contact.tags = item.tags
    # A new member fires SUBSCRIBED; on a double opt-in list at sign-up (status 6), and the
    # later confirmation does not fire again (support article, §8).
    if status in (SUBSCRIBED, UNCONFIRMED):
        lst.emulator.fire_webhook(lst, item.email, "SUBSCRIBED")
    return member


def update_data(member: Member, item: SubscriberInput, fields: dict[str, Any]) -> None:
    member.contact.update(item.person)
    member.custom_fields = fields
    if item.tags is not None:  # tags replace all (the official WP plugin relies on it)
        member.contact.tags = item.tags
    if item.groups is not None:
        member.groups = item.groups


def set_status(lst: MailingList, member: Member, status: int, now: datetime) -> None:
    """A status change by the API: 2 -> 1 fires SUBSCRIBED; nothing the API does fires
    UNSUBSCRIBED (support article, §8)."""
    previous = member.status
    if status == previous:
        return
    lst.move(member, status)
    if status == UNSUBSCRIBED:
        member.unsubscribed_at = now
    elif status == SUBSCRIBED and previous == UNSUBSCRIBED:
        member.subscribed_at, member.unsubscribed_at = now, None
        lst.emulator.fire_webhook(lst, member.email, "SUBSCRIBED")


def items_of(body: WriteBody) -> list[SubscriberData]:
    items = body.subscriber_data
    if not isinstance(items, list):
        raise Invalid("subscriber_data", "The subscriber_data field must be an array.")
    return items[:BULK_LIMIT]


def one_item(body: WriteBody) -> SubscriberData:
    if body.subscriber_data is None:
        raise Invalid("subscriber_data", "The subscriber_data field is required.")
    if not isinstance(body.subscriber_data, SubscriberData):
        raise Invalid("subscriber_data", "The subscriber_data field must be an object.")
    return body.subscriber_data


def flag(body: WriteBody, name: str, *, default: bool) -> bool:
    """Laravel's boolean rule: true/false, 1/0, "1"/"0" (and "true"/"false" here)."""
    value = getattr(body, name)
    if value is UNSET:
        return default
    if value in TRUE and not isinstance(value, float):
        return True
    if value in FALSE and not isinstance(value, float):
        return False
    raise Invalid(name, f"The {name} field must be true or false.")
