"""Marketing consent and who Ellity adds to the merchant's Ecomail list (PRODUCT §2).

Being a member of the merchant's Ecomail list means receiving their newsletters, so Ellity adds
a customer's contact only when the merchant's ``ecomail_add`` setting and the customer's
``marketing_consent`` allow it:

- ``consented`` (the default): only customers whose consent is ``granted``;
- ``customers``: every customer except those who ``refused`` (merchants who rely on the
  existing-customer exception for their own similar products; the legal basis is theirs);
- ``none``: nobody.

A customer Ellity does not add is still kept in sync when their contact is a member already
(fields only, never their status). Ellity never re-subscribes anyone; the one status change it
makes is unsubscribing a customer whose consent becomes ``refused`` (by the e-shop or staff:
a refusal Ecomail reported is an unsubscription already).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from ellity.domain.model.errors import InvalidInput
from ellity.domain.model.ids import CustomerId, MerchantId


class MarketingConsent(StrEnum):
    GRANTED = "granted"
    REFUSED = "refused"
    UNKNOWN = "unknown"


class ConsentSource(StrEnum):
    """Who last set a customer's consent."""

    API = "api"  # the e-shop, through the API
    STAFF = "staff"  # the merchant's staff, on the customer's page
    ECOMAIL = "ecomail"  # a notification from Ecomail's list webhook that Ecomail confirmed


class EcomailAdd(StrEnum):
    """Whom Ellity adds to the merchant's Ecomail list (the ``ecomail_add`` setting)."""

    CONSENTED = "consented"
    CUSTOMERS = "customers"
    NONE = "none"


DEFAULT_ECOMAIL_ADD = EcomailAdd.CONSENTED


def parse_consent(value: str, *, allow_unknown: bool = True) -> MarketingConsent:
    """A consent as the API or a form sends it; ``InvalidInput`` saying what is allowed."""
    allowed = [
        c.value for c in MarketingConsent if allow_unknown or c is not MarketingConsent.UNKNOWN
    ]
    cleaned = value.strip().lower()
    if cleaned not in allowed:
        raise InvalidInput(
            "marketing_consent must be one of: %(choices)s.", choices=", ".join(allowed)
        )
    return MarketingConsent(cleaned)


def parse_ecomail_add(value: str) -> EcomailAdd:
    cleaned = value.strip().lower()
    try:
        return EcomailAdd(cleaned)
    except ValueError:
        raise InvalidInput(
            "ecomail_add must be one of: %(choices)s.",
            choices=", ".join(a.value for a in EcomailAdd),
        ) from None


def adds_more(before: EcomailAdd, after: EcomailAdd) -> bool:
    """Whether changing the setting from ``before`` to ``after`` lets Ellity add customers it
    did not add before (``none`` → anything, ``consented`` → ``customers``): those customers
    are then added by writing every contact again."""
    return any(may_add(after, c) and not may_add(before, c) for c in MarketingConsent)


def may_add(setting: EcomailAdd, consent: MarketingConsent) -> bool:
    """Whether Ellity may add a customer with this consent to the list (subscribe them)."""
    if setting is EcomailAdd.CONSENTED:
        return consent is MarketingConsent.GRANTED
    if setting is EcomailAdd.CUSTOMERS:
        return consent is not MarketingConsent.REFUSED
    return False


@dataclass(frozen=True, slots=True)
class ConsentChange:
    """One line of a customer's consent history: what it became, from what, who set it, when."""

    merchant_id: MerchantId
    customer_id: CustomerId
    consent: MarketingConsent
    previous: MarketingConsent
    source: ConsentSource
    at: datetime


@dataclass(frozen=True, slots=True)
class ConsentCounts:
    """How many of a merchant's customers with an email have each consent, and how many
    customers have no email (never synced)."""

    granted: int = 0
    refused: int = 0
    unknown: int = 0
    without_email: int = 0

    def of(self, consent: MarketingConsent) -> int:
        return {
            MarketingConsent.GRANTED: self.granted,
            MarketingConsent.REFUSED: self.refused,
            MarketingConsent.UNKNOWN: self.unknown,
        }[consent]


@dataclass(frozen=True, slots=True)
class MembershipPlan:
    """What the contact sync does with a merchant's customers under one ``ecomail_add``:
    ``added`` are added to the list (or updated when members), ``updated_only`` get their
    fields written only if they are members already, ``never_added`` refused (and are
    unsubscribed when Ellity learns it), ``without_email`` are not synced at all."""

    setting: EcomailAdd
    added: int
    updated_only: int
    never_added: int
    without_email: int


def membership_plan(setting: EcomailAdd, counts: ConsentCounts) -> MembershipPlan:
    added = sum(counts.of(c) for c in MarketingConsent if may_add(setting, c))
    return MembershipPlan(
        setting=setting,
        added=added,
        updated_only=counts.granted + counts.unknown - added,
        never_added=counts.refused,
        without_email=counts.without_email,
    )
