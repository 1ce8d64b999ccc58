"""A merchant and the settings of its points programme."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Literal, cast
from urllib.parse import urlsplit

from ellity.domain.model.consent import DEFAULT_ECOMAIL_ADD, EcomailAdd, parse_ecomail_add
from ellity.domain.model.errors import InvalidInput, Term
from ellity.domain.model.expiry import MAX_VALIDITY_MONTHS, ExpiryPolicy, zone
from ellity.domain.model.ids import MerchantId
from ellity.domain.model.money import LOCALES, Locale, Points
from ellity.domain.model.reconciliation import DEFAULT_SCHEDULE, Schedule, parse_schedule
from ellity.domain.model.referral import DEFAULT_LINK_TEMPLATE, validate_link_template

MAX_PROGRAMME_NAME = 100
MAX_URL_LENGTH = 500
MAX_PRE_EXPIRY_DAYS = 365
DEFAULT_PRE_EXPIRY_DAYS = 14
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def clean_slug(slug: str) -> str:
    slug = slug.strip()
    if not _SLUG.match(slug):
        raise InvalidInput(
            "A slug is 1 to 63 lower-case letters, digits or hyphens,"
            " starting with a letter or digit."
        )
    return slug


def clean_shop_url(url: str) -> str:
    """An http(s) URL without the trailing slash; empty means not set yet."""
    url = url.strip()
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > MAX_URL_LENGTH:
        raise InvalidInput(
            "'%(url)s' is not a shop URL; use one like https://shop.example.cz.", url=url[:80]
        )
    return url.rstrip("/")


def parse_bool(value: str, what: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise InvalidInput(
        "The %(what)s setting must be true or false, not '%(value)s'.", what=what, value=value
    )


def _parse_int(value: str, what: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise InvalidInput(
            "The %(what)s must be a whole number, not '%(value)s'.", what=Term(what), value=value
        ) from None


@dataclass(frozen=True, slots=True)
class MerchantSettings:
    """What a merchant configures; construction validates every value."""

    name: str
    shop_url: str = ""
    referral_link_template: str = DEFAULT_LINK_TEMPLATE
    referral_bonus: Points = Points(0)  # noqa: RUF009 - Points is frozen
    validity_months: int = 12
    locale: Locale = "cs"
    timezone: str = "Europe/Prague"
    send_system_emails: bool = False
    newsletter_reward: Points = Points(0)  # noqa: RUF009 - 0 = no reward for subscribing
    newsletter_take_back: bool = False  # the reward is deducted again on unsubscribe
    pre_expiry_notify: bool = False  # True: "Notify Ecomail", False: "Do not send"
    pre_expiry_days: int = DEFAULT_PRE_EXPIRY_DAYS  # how many days ahead of the last valid day
    ecomail_add: EcomailAdd = DEFAULT_ECOMAIL_ADD  # whom the contact sync adds to the list
    ecomail_reconcile: Schedule = DEFAULT_SCHEDULE  # how often the list is reconciled

    def __post_init__(self) -> None:
        name = self.name.strip()
        if not name or len(name) > MAX_PROGRAMME_NAME:
            raise InvalidInput(
                "The programme name must have 1 to %(max)s characters.", max=MAX_PROGRAMME_NAME
            )
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "shop_url", clean_shop_url(self.shop_url))
        object.__setattr__(
            self, "referral_link_template", validate_link_template(self.referral_link_template)
        )
        if self.referral_bonus.hundredths < 0:
            raise InvalidInput("The referral bonus cannot be negative.")
        if self.locale not in LOCALES:
            raise InvalidInput("The locale must be one of %(choices)s.", choices=", ".join(LOCALES))
        zone(self.timezone)
        if not 0 <= self.validity_months <= MAX_VALIDITY_MONTHS:
            raise InvalidInput(
                "Validity must be between 0 (never expires) and %(max)s months.",
                max=MAX_VALIDITY_MONTHS,
            )
        if self.newsletter_reward.hundredths < 0:
            raise InvalidInput("The newsletter reward cannot be negative.")
        if not 1 <= self.pre_expiry_days <= MAX_PRE_EXPIRY_DAYS:
            raise InvalidInput(
                "The days before expiry must be between 1 and %(max)s.", max=MAX_PRE_EXPIRY_DAYS
            )

    @property
    def expiry_policy(self) -> ExpiryPolicy:
        return ExpiryPolicy(self.validity_months, self.timezone)

    def as_strings(self) -> dict[str, str]:
        """The settings as ``ellity settings`` prints them."""
        return {
            "name": self.name,
            "shop_url": self.shop_url,
            "referral_link_template": self.referral_link_template,
            "referral_bonus": self.referral_bonus.decimal_string(),
            "validity_months": str(self.validity_months),
            "locale": self.locale,
            "timezone": self.timezone,
            "send_system_emails": _bool_text(self.send_system_emails),
            "newsletter_reward": self.newsletter_reward.decimal_string(),
            "newsletter_take_back": _bool_text(self.newsletter_take_back),
            "pre_expiry_notify": _bool_text(self.pre_expiry_notify),
            "pre_expiry_days": str(self.pre_expiry_days),
            "ecomail_add": self.ecomail_add.value,
            "ecomail_reconcile": self.ecomail_reconcile.value,
        }

    def with_changes(self, changes: dict[str, str]) -> MerchantSettings:
        """New settings from ``KEY=VALUE`` text, validated exactly like the settings page."""
        unknown = sorted(set(changes) - set(SETTING_KEYS))
        if unknown:
            raise InvalidInput(
                "Unknown setting %(unknown)s; known settings: %(known)s.",
                unknown=", ".join(unknown),
                known=", ".join(SETTING_KEYS),
            )
        parsed: dict[str, object] = {}
        for key, raw in changes.items():
            if key in ("referral_bonus", "newsletter_reward"):
                parsed[key] = Points.parse(raw)
            elif key == "validity_months":
                parsed[key] = _parse_int(raw, Term("validity in months"))
            elif key == "pre_expiry_days":
                parsed[key] = _parse_int(raw, Term("number of days before expiry"))
            elif key in _BOOL_KEYS:
                parsed[key] = parse_bool(raw, key)
            elif key == "locale":
                parsed[key] = cast(Locale, raw.strip())
            elif key == "ecomail_add":
                parsed[key] = parse_ecomail_add(raw)
            elif key == "ecomail_reconcile":
                parsed[key] = parse_schedule(raw)
            else:
                parsed[key] = raw
        return dataclasses.replace(self, **parsed)  # type: ignore[arg-type]


SETTING_KEYS: tuple[str, ...] = (
    "name",
    "shop_url",
    "referral_link_template",
    "referral_bonus",
    "validity_months",
    "locale",
    "timezone",
    "send_system_emails",
    "newsletter_reward",
    "newsletter_take_back",
    "pre_expiry_notify",
    "pre_expiry_days",
    "ecomail_add",
    "ecomail_reconcile",
)
_BOOL_KEYS = frozenset(("send_system_emails", "newsletter_take_back", "pre_expiry_notify"))


def _bool_text(value: bool) -> str:
    return "true" if value else "false"


SmtpSecurity = Literal["starttls", "tls", "none"]
SMTP_SECURITY: tuple[SmtpSecurity, ...] = ("starttls", "tls", "none")


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """Where the merchant's system emails are sent through. The password is kept apart,
    encrypted, and never part of this object."""

    host: str = ""
    port: int = 587
    username: str = ""
    sender: str = ""
    security: SmtpSecurity = "starttls"

    def __post_init__(self) -> None:
        host = self.host.strip()
        if len(host) > 253 or any(ch.isspace() for ch in host):
            raise InvalidInput("The SMTP host must be a host name such as smtp.example.cz.")
        object.__setattr__(self, "host", host)
        if not 1 <= self.port <= 65535:
            raise InvalidInput("The SMTP port must be between 1 and 65535.")
        if len(self.username) > 254:
            raise InvalidInput("The SMTP user name may have at most 254 characters.")
        sender = self.sender.strip()
        if sender and (len(sender) > 254 or "@" not in sender or any(c in sender for c in "\r\n")):
            raise InvalidInput("The sender must be an email address such as shop@example.cz.")
        object.__setattr__(self, "sender", sender)
        if self.security not in SMTP_SECURITY:
            raise InvalidInput(
                "The SMTP security must be one of %(choices)s.", choices=", ".join(SMTP_SECURITY)
            )

    @property
    def is_configured(self) -> bool:
        return bool(self.host and self.sender)


@dataclass
class Merchant:
    slug: str
    settings: MerchantSettings
    id: MerchantId | None = None
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
