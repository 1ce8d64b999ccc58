"""Changes made to a list behind Ellity's back, and a quick way to fill a list.

Each is what a person, the merchant or another tool does in Ecomail, and none fires the list
webhook (Ecomail fires it only for a sign-up and a link unsubscribe, §8):

- ``edit_field``: the merchant edits a contact's custom field by hand;
- ``unsubscribe``: another tool unsubscribes the contact through the API (status 2);
- ``set_status``: a bounce (3 soft, 4 hard) or a spam complaint (5), or any other status;
- ``delete_member``: the merchant deletes the contact from the list;
- ``confirm_double_optin``: the person clicks the confirmation link (6 -> 1);
- ``add_member``: a sign-up whose notification was lost (no webhook);
- ``seed_members``: many members at once, for benchmarks (a million in seconds).

They are methods of ``Emulator`` (``ControlsMixin``) taking a list id (ids are unique across
the emulator's accounts) and served over HTTP under ``CONTROL_PREFIX`` (``control_app``), so a
separately started emulator can be driven too. An unknown list or member raises ``KeyError``
(404 over HTTP); a bad value ``ValueError`` (422).
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from tests.ecomail_emulator.model import SUBSCRIBED, UNSUBSCRIBED, Contact, MailingList, Member

if TYPE_CHECKING:
    import threading
    from datetime import datetime

    from tests.ecomail_emulator.model import Account

#: The path prefix of the control endpoints; the API's own paths never start with it.
CONTROL_PREFIX = "/_emulator"
STATUSES = frozenset({1, 2, 3, 4, 5, 6})

#: One seeded member: (email, status, custom fields or None).
SeedRow = tuple[str, int, Mapping[str, Any] | None]


class ControlsMixin:
    """The controls, mixed into ``Emulator``."""

    lock: threading.RLock
    accounts: dict[str, Account]
    contact_ids: Iterator[int]
    member_ids: Iterator[int]
    _froze: bool

    def now(self) -> datetime:
        raise NotImplementedError

    def find_list(self, list_id: int) -> MailingList:
        """The list with this id, whichever account it belongs to."""
        with self.lock:
            for account in self.accounts.values():
                found = account.lists.get(int(list_id))
                if found is not None:
                    return found
        raise KeyError(f"no list {list_id}")

    def find_member(self, list_id: int, email: str) -> Member:
        lst = self.find_list(list_id)
        member = lst.members.get(email.strip().lower())
        if member is None:
            raise KeyError(f"{email} is not in list {list_id}")
        return member

    def edit_field(self, list_id: int, email: str, key: str, value: str | int | None) -> Member:
        """The merchant sets a custom field by hand (``None`` empties it); the field is made
        on the list if it is new. The value is stored as given."""
        with self.lock:
            lst = self.find_list(list_id)
            member = self.find_member(list_id, email)
            name = key.strip().lower()
            if not name:
                raise ValueError("a custom field needs a key")
            fields = dict(member.custom_fields)  # never changed in place: seeds share dicts
            if value is None:
                fields.pop(name, None)
            else:
                fields[lst.define_field(name, "int" if type(value) is int else "string")] = value
            member.custom_fields = fields
            return member

    def unsubscribe(self, list_id: int, email: str) -> Member:
        """Another tool unsubscribes the contact through the API (status 2 and its time)."""
        return self.set_status(list_id, email, UNSUBSCRIBED)

    def set_status(self, list_id: int, email: str, status: int) -> Member:
        """Any status change without a webhook: 2 records ``unsubscribed_at``; 1 from another
        status records ``subscribed_at`` and clears ``unsubscribed_at``; others (3 soft
        bounce, 4 hard bounce, 5 complaint, 6 unconfirmed) keep the times."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        with self.lock:
            member = self.find_member(list_id, email)
            if member.status == status:
                return member
            lst = self.find_list(list_id)
            lst.move(member, status)
            if status == UNSUBSCRIBED:
                member.unsubscribed_at = self.now()
            elif status == SUBSCRIBED:
                member.subscribed_at, member.unsubscribed_at = self.now(), None
            return member

    def confirm_double_optin(self, list_id: int, email: str) -> Member:
        """The person confirms a double opt-in: 6 -> 1 with ``subscribed_at``; Ecomail fires
        no webhook. A member in another status is left as it is."""
        with self.lock:
            return self.find_list(list_id).confirm_double_optin(email)

    def delete_member(self, list_id: int, email: str) -> None:
        """The merchant deletes the contact from the list; a person left in no list of the
        account is gone from it."""
        with self.lock:
            lst = self.find_list(list_id)
            member = self.find_member(list_id, email)
            del lst.members[member.email]
            lst.index.remove(member)
            member._list = None
            contact = member.contact
            contact.memberships -= 1
            if contact.memberships <= 0:
                lst.account.contacts.pop(contact.email, None)

    def add_member(
        self,
        list_id: int,
        email: str,
        *,
        status: int = SUBSCRIBED,
        custom_fields: Mapping[str, Any] | None = None,
        name: str | None = None,
        surname: str | None = None,
    ) -> Member:
        """A member that joined without Ellity hearing of it (no webhook)."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        with self.lock:
            lst = self.find_list(list_id)
            if email.strip().lower() in lst.members:
                raise ValueError(f"{email} is in list {list_id} already")
            return lst.add_member(
                email,
                status=status,
                custom_fields=dict(custom_fields or {}),
                name=name,
                surname=surname,
            )

    def seed_members(self, list_id: int, rows: Iterable[SeedRow]) -> int:
        """Add many members fast and lean (no webhooks, no checks but the status): ``rows``
        may be a generator. An email already in the list is skipped. Custom-field keys are
        lower-cased; a row's fields dict is kept as given when its keys already are, so rows
        may share one dict. Returns how many were added."""
        with self.lock:
            lst = self.find_list(list_id)
            account = lst.account
            now = self.now()
            members, contacts, index = lst.members, account.contacts, lst.index
            known = lst.known_fields
            added = 0
            collecting = gc.isenabled()
            gc.disable()  # a million new objects would trigger many full collections
            try:
                for email, status, fields in rows:
                    address = email.strip().lower()
                    if address in members:
                        continue
                    if status not in STATUSES:
                        raise ValueError(f"unknown status {status!r} for {email}")
                    stored = _stored_fields(lst, known, fields)
                    contact = contacts.get(address)
                    if contact is None:
                        contact = Contact(next(self.contact_ids), address, now)
                        contacts[address] = contact
                    contact.memberships += 1
                    member = Member(
                        next(self.member_ids),
                        contact,
                        status,
                        stored,
                        now,
                        now if status == UNSUBSCRIBED else None,
                        "import",
                        None,
                        lst,
                    )
                    members[address] = member
                    index.add(member)
                    added += 1
            finally:
                if collecting:
                    gc.enable()
            if added >= 10_000:
                gc.freeze()  # keep the new objects out of later collections (``close`` undoes)
                self._froze = True
            return added


def _stored_fields(
    lst: MailingList, known: dict[str, tuple[str, str]], fields: Mapping[str, Any] | None
) -> dict[str, Any]:
    if not fields:
        return {}
    if all(key in known for key in fields) and type(fields) is dict:
        return fields  # already in the list's keys: kept as given (and maybe shared)
    stored: dict[str, Any] = {}
    for raw_key, value in fields.items():
        kind = "int" if type(value) is int else "string"
        stored[lst.define_field(raw_key.strip().lower(), kind)] = value
    return stored
