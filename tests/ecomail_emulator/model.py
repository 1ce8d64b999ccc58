"""The accounts, lists, people and memberships the emulator keeps in memory.

Sized for a million members in one list: members are slotted objects in dicts keyed by
lower-cased email; a ``StatusIndex`` keeps the status counters and member pages cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tests.ecomail_emulator.status_index import StatusIndex

if TYPE_CHECKING:
    from tests.ecomail_emulator.emulator import Emulator

SUBSCRIBED, UNSUBSCRIBED, SOFT_BOUNCE, HARD_BOUNCE, COMPLAINED, UNCONFIRMED = 1, 2, 3, 4, 5, 6


@dataclass(slots=True, eq=False)
class Contact:
    """The person, shared by every list of the account (name, tags, ...)."""

    id: int
    email: str
    inserted_at: datetime
    name: str | None = None
    surname: str | None = None
    gender: str | None = None
    extra: dict[str, Any] | None = None  # company, city, phone, ... as given
    tags: list[str] | None = None
    memberships: int = 0

    def update(self, person: dict[str, Any]) -> None:
        for key, value in person.items():
            if key == "name":
                self.name = value
            elif key == "surname":
                self.surname = value
            elif key == "gender":
                self.gender = value
            else:
                if self.extra is None:
                    self.extra = {}
                self.extra[key] = value

    def get(self, key: str) -> Any:
        return self.extra.get(key) if self.extra else None


@dataclass(slots=True, eq=False, repr=False)
class Member:
    """One email's membership of one list. ``status`` is Ecomail's number (1 subscribed,
    2 unsubscribed, 3 soft bounce, 4 hard bounce, 5 complaint, 6 unconfirmed)."""

    id: int
    contact: Contact
    _status: int
    custom_fields: dict[str, Any]
    subscribed_at: datetime | None
    unsubscribed_at: datetime | None
    source: str | None
    groups: dict[str, Any] | None = None
    _list: MailingList | None = None
    _pos: int = -1

    @property
    def email(self) -> str:
        return self.contact.email

    @property
    def name(self) -> str | None:
        return self.contact.name

    @name.setter
    def name(self, value: str | None) -> None:
        self.contact.name = value

    @property
    def surname(self) -> str | None:
        return self.contact.surname

    @surname.setter
    def surname(self, value: str | None) -> None:
        self.contact.surname = value

    @property
    def inserted_at(self) -> datetime:
        return self.contact.inserted_at

    @property
    def status(self) -> int:
        return self._status

    @status.setter
    def status(self, value: int) -> None:
        """A raw change (no timestamps, no webhook) that keeps the list's counters right."""
        if self._list is None:
            self._status = value
        else:
            self._list.move(self, value)

    def __repr__(self) -> str:
        return f"Member({self.email!r}, status={self._status}, custom_fields={self.custom_fields})"


class MailingList:
    """A contact list. Writes go through ``tests.ecomail_emulator.writes``; the helpers here
    are the app-side actions a person or the merchant takes in Ecomail itself."""

    def __init__(
        self,
        account: Account,
        list_id: int,
        name: str,
        *,
        double_optin: bool,
        webhook_url: str | None,
        from_name: str,
        from_email: str,
        reply_to: str,
        created: datetime,
    ) -> None:
        self.account = account
        self.id = list_id
        self.name = name
        self.double_optin = double_optin
        self.webhook_url = webhook_url
        self.from_name = from_name
        self.from_email = from_email
        self.reply_to = reply_to
        self.created = created
        self.settings: dict[str, Any] = {}  # the other PUT /lists fields, as given
        self.fields: dict[str, dict[str, str]] = {}  # key -> {"type", "name"}
        self.known_fields: dict[str, tuple[str, str]] = {}  # key -> (the one shared key, type)
        self.members: dict[str, Member] = {}
        self.index = StatusIndex()
        #: Emails the list's subscribe and update writes refuse (422, the whole request)
        #: with this message: a rule of Ecomail's that the emulator does not model, such as
        #: a blocked domain. Tests set it.
        self.refused: dict[str, str] = {}

    @property
    def emulator(self) -> Emulator:
        return self.account.emulator

    def define_field(self, key: str, kind: str = "string") -> str:
        """The field's definition, made on first use; answers the key members share."""
        if key not in self.known_fields:
            definition = self.fields.setdefault(key, {"type": kind, "name": key})
            self.known_fields[key] = (key, definition["type"])
        return self.known_fields[key][0]

    def move(self, member: Member, status: int) -> None:
        if status != member._status:
            self.index.remove(member)
            member._status = status
            self.index.add(member)

    def counts(self) -> dict[str, int]:
        known = {0, 1, 2, 3, 4, 5, 6}
        unknown = sum(self.index.count(s) for s in self.index.statuses() if s not in known)
        return {
            "unknown": self.index.count(0) + unknown,
            "subscribed": self.index.count(SUBSCRIBED),
            "unsubscribed": self.index.count(UNSUBSCRIBED),
            "soft_bounced": self.index.count(SOFT_BOUNCE),
            "hard_bounced": self.index.count(HARD_BOUNCE),
            "complained": self.index.count(COMPLAINED),
            "unconfirmed": self.index.count(UNCONFIRMED),
        }

    def add_member(
        self,
        email: str,
        *,
        status: int = SUBSCRIBED,
        name: str | None = None,
        surname: str | None = None,
        custom_fields: dict[str, Any] | None = None,
        source: str = "api",
    ) -> Member:
        """Seed a member directly (no webhook, no validation beyond key normalisation)."""
        with self.emulator.lock:
            now = self.emulator.now()
            fields: dict[str, Any] = {}
            for raw_key, value in (custom_fields or {}).items():
                kind = "int" if type(value) is int else "string"
                fields[self.define_field(raw_key.strip().lower(), kind)] = value
            member = self.emulator.new_member(self, email.strip().lower(), status, fields, now)
            member.source = source
            person = {"name": name, "surname": surname}
            member.contact.update({k: v for k, v in person.items() if v is not None})
            return member

    def subscribe_by_form(self, email: str, **person: Any) -> Member:
        """A person signs up on the list's form: status 1 (6 on a double opt-in list) and the
        webhook fires ``SUBSCRIBED`` once, at sign-up (support article, §8)."""
        with self.emulator.lock:
            now = self.emulator.now()
            address = email.strip().lower()
            target = UNCONFIRMED if self.double_optin else SUBSCRIBED
            member = self.members.get(address)
            if member is None:
                member = self.emulator.new_member(self, address, target, {}, now)
                member.source = "form"
            elif member._status != SUBSCRIBED:
                self.move(member, target)
                member.subscribed_at, member.unsubscribed_at = now, None
            member.contact.update(person)
            self.emulator.fire_webhook(self, address, "SUBSCRIBED")
            return member

    def confirm_double_optin(self, email: str) -> Member:
        """The person clicks the confirmation link: 6 -> 1 from now (``subscribed_at``); no
        webhook (§8)."""
        with self.emulator.lock:
            member = self.members[email.strip().lower()]
            if member._status == UNCONFIRMED:
                self.move(member, SUBSCRIBED)
                member.subscribed_at = self.emulator.now()
            return member

    def unsubscribe_by_link(self, email: str, *, campaign_id: int | None = None) -> Member:
        """The person clicks the unsubscribe link in an email: status 2, webhook fires."""
        with self.emulator.lock:
            member = self.members[email.strip().lower()]
            if member._status != UNSUBSCRIBED:
                self.move(member, UNSUBSCRIBED)
                member.unsubscribed_at = self.emulator.now()
            self.emulator.fire_webhook(self, member.email, "UNSUBSCRIBED", campaign_id)
            return member


@dataclass(eq=False)
class Account:
    """An Ecomail account reached with one API key."""

    emulator: Emulator
    id: int
    key: str
    name: str
    lists: dict[int, MailingList] = field(default_factory=dict)
    contacts: dict[str, Contact] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def add_list(
        self,
        name: str,
        double_optin: bool = False,
        webhook_url: str | None = None,
        *,
        from_name: str | None = None,
        from_email: str = "newsletter@example.com",
        reply_to: str | None = None,
    ) -> int:
        with self.emulator.lock:
            list_id = next(self.emulator.list_ids)
            self.lists[list_id] = MailingList(
                self,
                list_id,
                name,
                double_optin=double_optin,
                webhook_url=webhook_url,
                from_name=from_name if from_name is not None else name,
                from_email=from_email,
                reply_to=reply_to if reply_to is not None else from_email,
                created=self.emulator.now(),
            )
            return list_id

    def delete_list(self, list_id: int) -> None:
        """The merchant deletes the list in the app; people left in no list are gone too."""
        with self.emulator.lock:
            removed = self.lists.pop(list_id)
            for member in removed.members.values():
                member.contact.memberships -= 1
                if member.contact.memberships <= 0:
                    self.contacts.pop(member.contact.email, None)

    def has_contact(self, email: str) -> bool:
        contact = self.contacts.get(email.strip().lower())
        return contact is not None and contact.memberships > 0
