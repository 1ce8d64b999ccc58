"""Staff users: who may log in to a merchant's pages, and the rules of logging in."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from ellity.domain.model.customer import email_key
from ellity.domain.model.errors import DomainError, Minutes, NotFound
from ellity.domain.model.ids import MerchantId, StaffId
from ellity.domain.model.money import Locale
from ellity.domain.model.text import has_control_characters

#: The 11th attempt within a window is refused from a client address, and for an email from
#: one client address. Attempts for an email from everywhere never refuse: past the same count
#: each one waits a little longer (``account_delay``), so nobody can lock the owner out.
MAX_FAILED_LOGINS = 10
LOGIN_WINDOW = timedelta(minutes=15)
ACCOUNT_DELAY_STEP = timedelta(milliseconds=250)
MAX_ACCOUNT_DELAY = timedelta(seconds=2)
MAX_CLIENT_KEY = 200


@dataclass(frozen=True, slots=True)
class StaffUser:
    id: StaffId
    merchant_id: MerchantId
    email: str
    password_hash: str
    #: The language of the pages this user chose; None: the merchant's (``default_language``).
    ui_language: Locale | None = None


@dataclass(frozen=True, slots=True)
class StaffIdentity:
    """Who is logged in, as every page sees it; never carries the password hash."""

    staff_id: StaffId
    merchant_id: MerchantId
    email: str
    merchant_slug: str
    programme_name: str
    locale: Locale
    time_zone: str
    ui_language: Locale = "cs"  # the language of the user's pages


def default_language(merchant_locale: str) -> Locale:
    """The pages' language for a staff user who has not chosen one: Czech for a merchant
    whose locale is ``cs``, English otherwise."""
    return "cs" if merchant_locale == "cs" else "en"


class InvalidCredentials(DomainError):
    code = "invalid_credentials"

    def __init__(self) -> None:
        super().__init__("The email or the password is wrong.")


class LoginThrottled(DomainError):
    """Too many failed log-ins from a client, or for an email from that client, within
    ``LOGIN_WINDOW``."""

    code = "login_throttled"

    def __init__(self, *, retry_at: datetime, now: datetime) -> None:
        minutes = max(1, -(-int((retry_at - now).total_seconds()) // 60))
        super().__init__(
            "Too many failed log-ins. For your security, logging in is blocked for"
            " %(minutes)s; try again later.",
            minutes=Minutes(minutes),
        )
        self.retry_after_seconds = max(1, int((retry_at - now).total_seconds()))


class AlreadySetUp(NotFound):
    def __init__(self) -> None:
        super().__init__("Ellity has been set up already; log in instead.")


def account_delay(attempts: int) -> timedelta:
    """How long an attempt for an email waits when it is the ``attempts``-th for that email
    within the window, from any client: nothing up to ``MAX_FAILED_LOGINS``, then
    ``ACCOUNT_DELAY_STEP`` more for each attempt beyond, at most ``MAX_ACCOUNT_DELAY``."""
    beyond = attempts - MAX_FAILED_LOGINS
    return min(MAX_ACCOUNT_DELAY, ACCOUNT_DELAY_STEP * beyond) if beyond > 0 else timedelta(0)


def login_email(email: str) -> str | None:
    """The email a log-in form names, trimmed; None when it cannot be any staff user's:
    blank, or holding control characters (no stored email does)."""
    email = email.strip()
    return email if email and not has_control_characters(email) else None


def email_throttle_key(email: str) -> str:
    """Failed log-ins are counted per case-folded email. A control character counts as
    U+FFFD: keys are stored, and PostgreSQL cannot store a NUL."""
    folded = _email(email)[:254]
    return "email:" + "".join("\ufffd" if has_control_characters(ch) else ch for ch in folded)


def client_throttle_key(client: str) -> str:
    return "client:" + client.strip()[:MAX_CLIENT_KEY]


def email_client_throttle_key(email: str, client: str) -> str:
    """One email from one client; a digest, as the two together may be longer than a key."""
    pair = f"{_email(email)}\n{client.strip()[:MAX_CLIENT_KEY]}"
    return "email+client:" + hashlib.sha256(pair.encode("utf-8")).hexdigest()


def _email(email: str) -> str:
    return email_key(email.strip()) or ""


def slug_from_name(name: str) -> str:
    """A slug suggested by a programme name: ``Kavárna U Anny`` becomes ``kavarna-u-anny``."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:63].rstrip("-") or "shop"
