"""The email-marketing platform (Ecomail): lists, contacts with their custom fields, events.

Every failed call raises one of the errors below, never a transport library's exception:

- ``InvalidApiKey``: the key is wrong or was regenerated; nothing works until it is replaced.
- ``MarketingRateLimited`` (a ``MarketingUnavailable``): over the platform's request limit;
  ``retry_after`` says how long to wait.
- ``BudgetExhausted`` (a ``MarketingRateLimited``): Ellity held the call back and sent
  nothing, because its own request budget for the account is spent (or a ``Retry-After`` the
  platform gave is still running); ``retry_after`` says when a slot frees up. Waiting for it
  is not a failed attempt: queues defer the work without counting it.
- ``MarketingUnavailable``: down, timing out, unreachable, 5xx; try again later.
- ``MarketingRejected``: the platform refused the request as sent (4xx with its message);
  sending it again unchanged will not help. ``status`` is the HTTP status.
- ``ListNotFound`` (a ``MarketingRejected``): the list does not exist (any more).

Messages are written for the merchant and never contain the API key.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol, TypeAlias

# re-exported: a status is the domain's (``contact_state``), the platform reports it
from ellity.domain.model.contact_state import SubscriptionStatus as SubscriptionStatus  # noqa: PLC0414
from ellity.domain.model.reason import Reason

#: Custom-field types as the platform names them: "string", "int", "date".
FieldType: TypeAlias = str
JsonValue: TypeAlias = (
    str | int | float | bool | Sequence["JsonValue"] | Mapping[str, "JsonValue"] | None
)

#: Bulk calls take at most this many contacts; the platform silently drops the rest.
BULK_LIMIT = 3000

#: Members per page when reading a whole list (Ecomail allows up to 5000).
MEMBERS_PER_PAGE = 5000

#: Called once a request has its place in the request budget, right before it is sent: what
#: must be known even if the answer is lost is recorded there (an error from it cancels the
#: request).
BeforeSend: TypeAlias = Callable[[], Awaitable[None]]


class MarketingError(Exception):
    """Base of the errors a ``MarketingPlatform`` call may raise."""


class InvalidApiKey(MarketingError):
    pass


class MarketingUnavailable(MarketingError):
    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MarketingRateLimited(MarketingUnavailable):
    pass


class BudgetHold(StrEnum):
    """Why Ellity holds a request back."""

    SPENT = "spent"  # the minute's share of the account's requests is used up
    SLOW_DOWN = "slow_down"  # Ecomail's Retry-After is still running
    COUNT_LOST = "count_lost"  # the count of recent requests was lost; a full minute passes


def budget_wait(hold: BudgetHold, retry_after: float) -> Reason:
    """Why a request waits for Ellity's request budget, and for how many whole seconds."""
    seconds = max(1, math.ceil(retry_after))
    if hold is BudgetHold.SLOW_DOWN:
        return Reason(
            "Ecomail asked Ellity to slow down; Ellity will try again in %(seconds)s s.",
            seconds=seconds,
        )
    if hold is BudgetHold.COUNT_LOST:
        return Reason(
            "Ellity's count of its recent requests to this Ecomail account was lost when Redis"
            " restarted; it waits a full minute and tries again in %(seconds)s s.",
            seconds=seconds,
        )
    return Reason(
        "Ellity has used this Ecomail account's request budget for the minute;"
        " it will try again in %(seconds)s s.",
        seconds=seconds,
    )


class BudgetExhausted(MarketingRateLimited):
    """No request was sent: wait ``retry_after`` seconds for the request budget; ``reason``
    says why (``hold``), for logs in English and for the pages in the reader's language."""

    def __init__(self, *, retry_after: float, hold: BudgetHold = BudgetHold.SPENT) -> None:
        self.reason = budget_wait(hold, retry_after)
        super().__init__(self.reason.english(), retry_after=retry_after)
        self.retry_after: float = retry_after
        self.hold = hold


class MarketingRejected(MarketingError):
    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class ListNotFound(MarketingRejected):
    pass


@dataclass(frozen=True, slots=True)
class ContactList:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ListDetail:
    id: str
    name: str
    #: custom-field key (lower case, as the platform stores it) -> its type
    custom_fields: Mapping[str, FieldType]


@dataclass(frozen=True, slots=True)
class TypedValue:
    value: str | int
    type: FieldType


@dataclass(frozen=True, slots=True)
class ContactData:
    """What Ellity writes to one contact: its email, names (only when not empty) and fields."""

    email: str
    custom_fields: Mapping[str, TypedValue]
    first_name: str = ""
    last_name: str = ""


@dataclass(frozen=True, slots=True)
class Membership:
    """A contact's membership in one list, as the platform reports it."""

    email: str
    status: SubscriptionStatus
    subscribed_at: datetime | None
    unsubscribed_at: datetime | None
    custom_fields: Mapping[str, str | int] = field(default_factory=dict)


class MemberFilter(StrEnum):
    """The ``status`` filter of a list's member pages (Ecomail's query values). ``BOUNCED``
    covers soft and hard bounces."""

    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"
    NOT_CONFIRMED = "not_confirmed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"

    @property
    def statuses(self) -> frozenset[SubscriptionStatus]:
        """The members' statuses this filter returns."""
        return _FILTERED[self]


_FILTERED = {
    MemberFilter.SUBSCRIBED: frozenset({SubscriptionStatus.SUBSCRIBED}),
    MemberFilter.UNSUBSCRIBED: frozenset({SubscriptionStatus.UNSUBSCRIBED}),
    MemberFilter.NOT_CONFIRMED: frozenset({SubscriptionStatus.UNCONFIRMED}),
    MemberFilter.BOUNCED: frozenset(
        {SubscriptionStatus.SOFT_BOUNCED, SubscriptionStatus.HARD_BOUNCED}
    ),
    MemberFilter.COMPLAINED: frozenset({SubscriptionStatus.COMPLAINED}),
}


@dataclass(frozen=True, slots=True)
class MemberPage:
    """One page of a list's members with one status, in the platform's order.

    ``members`` carry lower-case ``custom_fields`` keys; ``last_page`` is at least 1 (an empty
    list has one empty page); ``total`` counts the members with this status in the list."""

    members: Sequence[Membership]
    page: int
    last_page: int
    total: int


@dataclass(frozen=True, slots=True)
class TrackerEvent:
    email: str
    category: str
    action: str
    label: str
    value: Mapping[str, JsonValue]


class MarketingPlatform(Protocol):
    """One merchant's account, reached with its API key."""

    async def check_key(self) -> None:
        """A cheap call that proves the key works; raises ``InvalidApiKey`` and the others."""
        ...

    async def lists(self) -> list[ContactList]: ...

    async def list_detail(self, list_id: str) -> ListDetail:
        """Raises ``ListNotFound``."""
        ...

    async def add_contacts(
        self,
        list_id: str,
        contacts: Sequence[ContactData],
        *,
        before_send: BeforeSend | None = None,
    ) -> int:
        """Add contacts that are not in the list yet (subscribed, without double opt-in,
        without autoresponders) and update those that are, never re-subscribing one that
        unsubscribed. At most ``BULK_LIMIT`` contacts. Returns how many were added.
        ``before_send`` runs once the request may go (not when the budget holds it back)."""
        ...

    async def update_contacts(self, list_id: str, contacts: Sequence[ContactData]) -> int:
        """Update contacts already in the list, never changing their subscription status.
        At most ``BULK_LIMIT`` contacts. Returns how many were updated."""
        ...

    async def membership(self, list_id: str, email: str) -> Membership | None:
        """The contact's membership in the list; ``None`` when it is not in it."""
        ...

    async def members(
        self, list_id: str, *, status: MemberFilter, page: int, per_page: int = MEMBERS_PER_PAGE
    ) -> MemberPage:
        """One page (1-based) of the list's members with ``status``; a page past the last is
        empty. ``page`` below 1 or ``per_page`` outside 1..``MEMBERS_PER_PAGE`` raise
        ``ValueError`` before any request. Raises ``ListNotFound`` and the others."""
        ...

    async def unsubscribe_contact(self, list_id: str, email: str) -> bool:
        """Unsubscribe the contact from the list (the only status change Ellity makes: the
        person refused marketing). True when the contact is now unsubscribed, also when it
        already was; False when the contact is not in the list (nothing to do). Raises like
        the others (``ListNotFound`` for a deleted list, ``MarketingUnavailable``,
        ``InvalidApiKey``, ``MarketingRejected``). Ecomail fires no list webhook for it."""
        ...

    async def send_event(
        self, event: TrackerEvent, *, before_send: BeforeSend | None = None
    ) -> None:
        """Record a tracker event for an existing contact. ``before_send`` runs once the
        request may go (not when the budget holds it back)."""
        ...


def check_member_page(page: int, per_page: int) -> None:
    """The arguments of ``MarketingPlatform.members``, checked the same way by every
    implementation."""
    if page < 1:
        raise ValueError(f"page must be 1 or more, not {page}")
    if not 1 <= per_page <= MEMBERS_PER_PAGE:
        raise ValueError(f"per_page must be from 1 to {MEMBERS_PER_PAGE}, not {per_page}")


def check_share(share: float | None) -> None:
    """A budget share is a fraction above 0, at most 1 (``None``: no share of its own)."""
    if share is not None and not 0 < share <= 1:
        raise ValueError(
            f"a share of the request budget must be above 0 and at most 1, not {share}"
        )


class MarketingPlatforms(Protocol):
    """Hands out a ``MarketingPlatform`` for an API key. ``account`` names whose traffic it is
    (the merchant) for the shared request limit.

    With a ``share`` (0 < share <= 1) every request of the returned platform counts against
    the key's whole budget as usual and also against a lane of the key's budget limited to
    ``share`` of it: background work (the reconciliation of a list) takes at most that share
    and the live sync keeps the rest. A hold caused by the lane raises ``BudgetExhausted``
    with ``BudgetHold.SPENT`` and the lane's wait."""

    def for_key(
        self, api_key: str, *, account: str, share: float | None = None
    ) -> MarketingPlatform: ...
