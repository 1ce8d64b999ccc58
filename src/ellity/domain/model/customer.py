"""Customers of one merchant: identity, registration state, PIN and referral code."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from ellity.domain.model.consent import ConsentChange, ConsentSource, MarketingConsent
from ellity.domain.model.errors import InvalidInput, RegisteredCustomerHasNoPin
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.pin import RandomBelow, generate_pin
from ellity.domain.model.text import has_control_characters, search_fold

MAX_EMAIL_LENGTH = 254
MAX_NAME_LENGTH = 100
MAX_SHOP_ID_LENGTH = 100
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def clean_email(email: str | None) -> str | None:
    """Trimmed and checked; ``None`` or blank means no email.

    Both the address and its case-folded form (``email_key``, what is stored to compare
    emails) fit ``MAX_EMAIL_LENGTH``: folding may lengthen an address (``ß`` becomes ``ss``).
    """
    if email is None or not email.strip():
        return None
    email = email.strip()
    if has_control_characters(email):
        raise InvalidInput("An email address must not contain control characters.")
    if len(email) > MAX_EMAIL_LENGTH or not _EMAIL.match(email):
        raise InvalidInput(f"'{email[:MAX_EMAIL_LENGTH]}' is not a valid email address.")
    if len(email.casefold()) > MAX_EMAIL_LENGTH:
        raise InvalidInput(
            f"The email address is too long: compared case-insensitively it has"
            f" {len(email.casefold())} characters (letters such as ß count as two), and at"
            f" most {MAX_EMAIL_LENGTH} are allowed."
        )
    return email


def email_key(email: str | None) -> str | None:
    """The form emails are compared in: case-insensitive."""
    return email.casefold() if email is not None else None


def name_key(name: str) -> str:
    """The form names are searched in: without case and accents (``search_fold``), at most
    the stored length."""
    return search_fold(name)[:MAX_NAME_LENGTH]


def email_domain_key(email: str | None) -> str | None:
    """The form the domain of an email is searched in (``@Kavovar.cz`` → ``kavovar.cz``): the
    case-folded part after the ``@`` (a clean email has exactly one)."""
    if email is None:
        return None
    return email.casefold().rpartition("@")[2]


def clean_name(value: str | None, what: str) -> str:
    value = (value or "").strip()
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidInput(f"The {what} may have at most {MAX_NAME_LENGTH} characters.")
    if has_control_characters(value):
        raise InvalidInput(f"The {what} must not contain control characters.")
    return value


def clean_shop_customer_id(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    if len(value) > MAX_SHOP_ID_LENGTH:
        raise InvalidInput(
            f"The shop customer id may have at most {MAX_SHOP_ID_LENGTH} characters."
        )
    if has_control_characters(value):
        raise InvalidInput("The shop customer id must not contain control characters.")
    return value


@dataclass
class Customer:
    """A customer; an anonymous one always holds a PIN, a registered one never does."""

    merchant_id: MerchantId
    referral_code: str
    created_at: datetime
    updated_at: datetime
    email: str | None = None
    first_name: str = ""
    last_name: str = ""
    shop_customer_id: str | None = None
    registered: bool = False
    pin: str | None = None
    referred_by_id: CustomerId | None = None
    id: CustomerId | None = None
    marketing_consent: MarketingConsent = MarketingConsent.UNKNOWN
    consent_source: ConsentSource | None = None  # who set it last; None while never set
    consent_changed_at: datetime | None = None

    @property
    def email_key(self) -> str | None:
        return email_key(self.email)

    def register(self, *, at: datetime) -> bool:
        """Become a registered member; the PIN is dropped. False if nothing changed."""
        if self.registered:
            return False
        self.registered = True
        self.pin = None
        self.updated_at = at
        return True

    def change_email(self, email: str, randbelow: RandomBelow, *, at: datetime) -> bool:
        """Move to another address. An anonymous customer whose address really changes (not
        only its case) gets a new PIN: the old one may sit in the old mailbox, someone else's
        when the address was a typo. True when a new PIN was drawn."""
        moved = self.email is not None and email_key(email) != self.email_key
        if email != self.email:
            self.email = email
            self.updated_at = at
        if not moved or self.registered:
            return False
        self.regenerate_pin(randbelow, at=at)
        return True

    def set_consent(
        self, consent: MarketingConsent, source: ConsentSource, *, at: datetime
    ) -> ConsentChange | None:
        """Record the customer's marketing consent as ``source`` reports it; the change for
        the history, or ``None`` when the consent was that already (its date is kept: it is
        when consent was given)."""
        if consent is self.marketing_consent:
            return None
        if self.id is None:
            raise ValueError("a customer's consent is changed once it is stored")
        change = ConsentChange(
            merchant_id=self.merchant_id,
            customer_id=self.id,
            consent=consent,
            previous=self.marketing_consent,
            source=source,
            at=at,
        )
        self.marketing_consent, self.consent_source, self.consent_changed_at = consent, source, at
        self.updated_at = at
        return change

    def make_anonymous(self, randbelow: RandomBelow, *, at: datetime) -> bool:
        if not self.registered:
            return False
        self.registered = False
        self.pin = generate_pin(randbelow)
        self.updated_at = at
        return True

    def regenerate_pin(self, randbelow: RandomBelow, *, at: datetime) -> str:
        if self.registered:
            raise RegisteredCustomerHasNoPin()
        old, self.pin = self.pin, generate_pin(randbelow)
        while self.pin == old:
            self.pin = generate_pin(randbelow)
        self.updated_at = at
        return self.pin
