"""Merchants (with their nightly schedule), their staff and their API tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from ellity.domain.model.api_token import ApiToken
from ellity.domain.model.ids import MerchantId, StaffId
from ellity.domain.model.merchant import Merchant, MerchantSettings, SmtpSettings
from ellity.domain.model.money import Locale
from ellity.domain.model.staff import StaffUser


@dataclass(frozen=True, slots=True)
class NightlySchedule:
    """When a merchant's nightly run is due: its time zone, the local date of the last run
    that finished, and until when a run's claim holds (``None``: no run has claimed it)."""

    merchant_id: MerchantId
    timezone: str
    last_nightly_on: date | None
    claimed_until: datetime | None = None


class MerchantRepository(Protocol):
    async def add(self, merchant: Merchant, *, at: datetime) -> Merchant:
        """Store a new merchant; raises ``UniqueViolation("slug")``."""
        ...

    async def get(self, merchant_id: MerchantId) -> Merchant | None: ...

    async def get_by_slug(self, slug: str) -> Merchant | None: ...

    async def update_settings(
        self, merchant_id: MerchantId, settings: MerchantSettings
    ) -> None: ...

    async def update_smtp(self, merchant_id: MerchantId, smtp: SmtpSettings) -> None: ...

    async def set_smtp_password(self, merchant_id: MerchantId, encrypted: str | None) -> None:
        """Store the encrypted SMTP password (``None`` removes it)."""
        ...

    async def smtp_password(self, merchant_id: MerchantId) -> str | None:
        """The encrypted SMTP password, if one is set."""
        ...

    async def record_test_email(self, merchant_id: MerchantId, *, at: datetime) -> None:
        """A test email went out through the merchant's SMTP account at ``at``."""
        ...

    async def count(self) -> int: ...

    async def add_first(self, merchant: Merchant, *, at: datetime) -> Merchant | None:
        """Store the merchant only if there is no merchant at all (the first-run setup);
        None otherwise. Of concurrent calls at most one stores its merchant."""
        ...

    async def nightly_schedules(self) -> list[NightlySchedule]:
        """Every merchant's nightly schedule, in id order."""
        ...

    async def claim_nightly(
        self, merchant_id: MerchantId, *, today: date, token: str, at: datetime, until: datetime
    ) -> bool:
        """Claim the merchant's nightly run for ``today`` with ``token`` until ``until``,
        unless a run for ``today`` (or later) has finished or another claim still holds at
        ``at``; True when this call did. Of concurrent claims, one wins. A claim that is
        neither finished nor released runs out at ``until`` (its process died)."""
        ...

    async def finish_nightly(self, merchant_id: MerchantId, *, today: date, token: str) -> bool:
        """Record ``today`` as the merchant's last finished nightly date and drop the claim,
        if the claim is still held with ``token``; False when it ran out and was taken over
        (the run that took it records the date)."""
        ...

    async def release_nightly(self, merchant_id: MerchantId, *, token: str) -> None:
        """Drop the claim held with ``token`` (the run failed or was cancelled), so that the
        next tick runs the night again."""
        ...


class StaffRepository(Protocol):
    async def add(
        self, merchant_id: MerchantId, *, email: str, password_hash: str, at: datetime
    ) -> StaffId:
        """A staff user; raises ``UniqueViolation("email")`` (emails are unique overall)."""
        ...

    async def get(self, staff_id: StaffId) -> StaffUser | None: ...

    async def find_by_email(self, email: str) -> StaffUser | None:
        """Case-insensitive; staff emails are unique across all merchants."""
        ...

    async def set_ui_language(self, staff_id: StaffId, language: Locale) -> bool:
        """The language of the user's pages; False when there is no such user."""
        ...


class ApiTokenRepository(Protocol):
    async def add(
        self, merchant_id: MerchantId, *, name: str, token_digest: str, hint: str, at: datetime
    ) -> ApiToken: ...

    async def find_active(self, token_digest: str) -> ApiToken | None:
        """The unrevoked token with this digest, whichever merchant owns it."""
        ...

    async def list(self, merchant_id: MerchantId) -> list[ApiToken]:
        """Newest first, revoked ones included."""
        ...

    async def revoke(self, merchant_id: MerchantId, token_id: int, *, at: datetime) -> bool:
        """False when the merchant has no such unrevoked token."""
        ...

    async def touch(self, token_id: int, *, at: datetime, unless_used_after: datetime) -> bool:
        """Record a use of the token at ``at``, unless its recorded last use is later than
        ``unless_used_after`` (a concurrent request recorded one); True when recorded."""
        ...
