"""Merchants (with their nightly schedule), their staff and their API tokens, in memory."""

from __future__ import annotations

import copy
import dataclasses
from datetime import date, datetime
from typing import TYPE_CHECKING

from ellity.domain.model import staff as staff_model
from ellity.domain.model.api_token import ApiToken
from ellity.domain.model.customer import email_key
from ellity.domain.model.ids import MerchantId, StaffId
from ellity.domain.model.merchant import Merchant, MerchantSettings, SmtpSettings
from ellity.domain.model.money import Locale
from ellity.ports.storage import (
    ApiTokenRepository,
    MerchantRepository,
    NightlySchedule,
    StaffRepository,
    UniqueViolation,
)
from tests.fakes.storage.state import StaffUser, round_trip

if TYPE_CHECKING:
    from tests.fakes.storage.unit_of_work import InMemoryUnitOfWork


class InMemoryMerchantRepository(MerchantRepository):
    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def add(self, merchant: Merchant, *, at: datetime) -> Merchant:
        await round_trip()
        state = self._uow.state
        if any(m.slug == merchant.slug for m in state.merchants.values()):
            raise UniqueViolation("slug")
        merchant_id = MerchantId(state.next_id("merchants"))
        merchant.id = merchant_id  # like the SQL adapter: the id is set in place
        state.merchants[merchant_id] = copy.deepcopy(merchant)
        state.merchant_created_at[merchant_id] = at
        return merchant

    async def get(self, merchant_id: MerchantId) -> Merchant | None:
        await round_trip()
        return copy.deepcopy(self._uow.state.merchants.get(merchant_id))

    async def get_by_slug(self, slug: str) -> Merchant | None:
        await round_trip()
        found = (m for m in self._uow.state.merchants.values() if m.slug == slug)
        return copy.deepcopy(next(found, None))

    async def update_settings(self, merchant_id: MerchantId, settings: MerchantSettings) -> None:
        await round_trip()
        merchant = self._uow.state.merchants.get(merchant_id)
        if merchant is None:
            raise LookupError(f"no merchant {merchant_id}")
        merchant.settings = settings

    async def count(self) -> int:
        await round_trip()
        return len(self._uow.state.merchants)

    async def add_first(self, merchant: Merchant, *, at: datetime) -> Merchant | None:
        # Writers hold the store's lock for their whole unit of work: no race to guard.
        if await self.count():
            return None
        return await self.add(merchant, at=at)

    async def update_smtp(self, merchant_id: MerchantId, smtp: SmtpSettings) -> None:
        await round_trip()
        merchant = self._uow.state.merchants.get(merchant_id)
        if merchant is None:
            raise LookupError(f"no merchant {merchant_id}")
        merchant.smtp = smtp

    async def set_smtp_password(self, merchant_id: MerchantId, encrypted: str | None) -> None:
        await round_trip()
        if encrypted is None:
            self._uow.state.smtp_passwords.pop(merchant_id, None)
        else:
            self._uow.state.smtp_passwords[merchant_id] = encrypted

    async def record_test_email(self, merchant_id: MerchantId, *, at: datetime) -> None:
        await round_trip()
        if merchant_id in self._uow.state.merchants:
            self._uow.state.test_emails_sent[merchant_id] = at

    async def smtp_password(self, merchant_id: MerchantId) -> str | None:
        await round_trip()
        return self._uow.state.smtp_passwords.get(merchant_id)

    async def nightly_schedules(self) -> list[NightlySchedule]:
        await round_trip()
        state = self._uow.state
        return [
            NightlySchedule(
                m_id,
                m.settings.timezone,
                state.nightly_dates.get(m_id),
                claim[1] if (claim := state.nightly_claims.get(m_id)) else None,
            )
            for m_id, m in sorted(state.merchants.items())
        ]

    async def claim_nightly(
        self, merchant_id: MerchantId, *, today: date, token: str, at: datetime, until: datetime
    ) -> bool:
        await round_trip()
        state = self._uow.state
        if merchant_id not in state.merchants:
            return False
        last = state.nightly_dates.get(merchant_id)
        if last is not None and last >= today:
            return False
        claim = state.nightly_claims.get(merchant_id)
        if claim is not None and claim[1] > at:
            return False
        state.nightly_claims[merchant_id] = (token, until)
        return True

    async def finish_nightly(self, merchant_id: MerchantId, *, today: date, token: str) -> bool:
        await round_trip()
        state = self._uow.state
        claim = state.nightly_claims.get(merchant_id)
        if claim is None or claim[0] != token:
            return False
        del state.nightly_claims[merchant_id]
        state.nightly_dates[merchant_id] = today
        return True

    async def release_nightly(self, merchant_id: MerchantId, *, token: str) -> None:
        await round_trip()
        claim = self._uow.state.nightly_claims.get(merchant_id)
        if claim is not None and claim[0] == token:
            del self._uow.state.nightly_claims[merchant_id]


class InMemoryStaffRepository(StaffRepository):
    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def add(
        self, merchant_id: MerchantId, *, email: str, password_hash: str, at: datetime
    ) -> StaffId:
        await round_trip()
        state = self._uow.state
        if merchant_id not in state.merchants:
            raise LookupError(f"no merchant {merchant_id}")
        if any(email_key(s.email) == email_key(email) for s in state.staff.values()):
            raise UniqueViolation("email")
        staff_id = StaffId(state.next_id("staff"))
        state.staff[staff_id] = StaffUser(staff_id, merchant_id, email, password_hash, at)
        return staff_id

    async def get(self, staff_id: StaffId) -> staff_model.StaffUser | None:
        await round_trip()
        return self._user(self._uow.state.staff.get(staff_id))

    async def find_by_email(self, email: str) -> staff_model.StaffUser | None:
        await round_trip()
        key = email_key(email)
        found = (s for s in self._uow.state.staff.values() if email_key(s.email) == key)
        return self._user(next(found, None))

    async def set_ui_language(self, staff_id: StaffId, language: Locale) -> bool:
        await round_trip()
        row = self._uow.state.staff.get(staff_id)
        if row is None:
            return False
        row.ui_language = language
        return True

    @staticmethod
    def _user(row: StaffUser | None) -> staff_model.StaffUser | None:
        if row is None:
            return None
        return staff_model.StaffUser(
            row.id, row.merchant_id, row.email, row.password_hash, row.ui_language
        )


class InMemoryApiTokenRepository(ApiTokenRepository):
    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    async def add(
        self, merchant_id: MerchantId, *, name: str, token_digest: str, hint: str, at: datetime
    ) -> ApiToken:
        await round_trip()
        state = self._uow.state
        if token_digest in state.api_token_digests.values():
            raise UniqueViolation("token_hash")
        token = ApiToken(
            id=state.next_id("api_tokens"),
            merchant_id=merchant_id,
            name=name,
            hint=hint,
            created_at=at,
        )
        state.api_tokens[token.id] = token
        state.api_token_digests[token.id] = token_digest
        return token

    async def find_active(self, token_digest: str) -> ApiToken | None:
        await round_trip()
        state = self._uow.state
        for token_id, digest in state.api_token_digests.items():
            token = state.api_tokens[token_id]
            if digest == token_digest and token.is_active:
                return token
        return None

    async def list(self, merchant_id: MerchantId) -> list[ApiToken]:
        await round_trip()
        found = [t for t in self._uow.state.api_tokens.values() if t.merchant_id == merchant_id]
        return sorted(found, key=lambda t: t.id, reverse=True)

    async def revoke(self, merchant_id: MerchantId, token_id: int, *, at: datetime) -> bool:
        await round_trip()
        token = self._uow.state.api_tokens.get(token_id)
        if token is None or token.merchant_id != merchant_id or not token.is_active:
            return False
        self._uow.state.api_tokens[token_id] = dataclasses.replace(token, revoked_at=at)
        return True

    async def touch(self, token_id: int, *, at: datetime, unless_used_after: datetime) -> bool:
        await round_trip()
        token = self._uow.state.api_tokens.get(token_id)
        if token is None or (
            token.last_used_at is not None and token.last_used_at > unless_used_after
        ):
            return False
        self._uow.state.api_tokens[token_id] = dataclasses.replace(token, last_used_at=at)
        return True
