"""Staff users: who may log in to a merchant's pages, and the rules of logging in."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from ellity.domain.model.customer import email_key
from ellity.domain.model.errors import DomainError, NotFound
from ellity.domain.model.money import Locale
from ellity.domain.model.text import has_control_characters

#: The 11th attempt within a window is refused, for an email and for a client alike.
MAX_FAILED_LOGINS = 10
LOGIN_WINDOW = timedelta(minutes=15)
MAX_CLIENT_KEY = 200


@dataclass(frozen=True, slots=True)
class StaffUser:
    id: int
    merchant_id: int
    email: str
    password_hash: str


@dataclass(frozen=True, slots=True)
class StaffIdentity:
    """Who is logged in, as every page sees it; never carries the password hash."""

    staff_id: int
    merchant_id: int
    email: str
    merchant_slug: str
    programme_name: str
    locale: Locale
    time_zone: str


class InvalidCredentials(DomainError):
    code = "invalid_credentials"

    def __init__(self) -> None:
        super().__init__("The email or the password is wrong.")


class LoginThrottled(DomainError):
    """Too many failed log-ins for an email or from a client within ``LOGIN_WINDOW``."""

    code = "login_throttled"

    def __init__(self, *, retry_at: datetime, now: datetime) -> None:
        minutes = max(1, -(-int((retry_at - now).total_seconds()) // 60))
        super().__init__(
            "Too many failed log-ins. For your security, logging in is blocked for "
            f"{minutes} minute{'s' if minutes != 1 else ''}; try again later."
        )
        self.retry_after_seconds = max(1, int((retry_at - now).total_seconds()))


class AlreadySetUp(NotFound):
    def __init__(self) -> None:
        super().__init__("Ellity has been set up already; log in instead.")


def login_email(email: str) -> str | None:
    """The email a log-in form names, trimmed; None when it cannot be any staff user's:
    blank, or holding control characters (no stored email does)."""
    email = email.strip()
    return email if email and not has_control_characters(email) else None


def email_throttle_key(email: str) -> str:
    """Failed log-ins are counted per case-folded email. A control character counts as
    U+FFFD: keys are stored, and PostgreSQL cannot store a NUL."""
    folded = (email_key(email.strip()) or "")[:254]
    return "email:" + "".join("\ufffd" if has_control_characters(ch) else ch for ch in folded)


def client_throttle_key(client: str) -> str:
    return "client:" + client.strip()[:MAX_CLIENT_KEY]


def slug_from_name(name: str) -> str:
    """A slug suggested by a programme name: ``Kavárna U Anny`` becomes ``kavarna-u-anny``."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:63].rstrip("-") or "shop"
