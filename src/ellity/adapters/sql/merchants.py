"""Merchants in SQL, with their SMTP settings and the claim on their nightly run: a token and
a lease written by one conditional ``UPDATE``, so that of concurrent claims one wins.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ellity.adapters.sql.tables.merchants import merchants
from ellity.adapters.sql.unique import unique_violations
from ellity.adapters.sql.work_queue import unclaimed
from ellity.domain.model.consent import EcomailAdd
from ellity.domain.model.ids import MerchantId
from ellity.domain.model.merchant import Merchant, MerchantSettings, SmtpSettings
from ellity.domain.model.money import Points
from ellity.domain.model.reconciliation import Schedule
from ellity.ports.storage.merchants import MerchantRepository, NightlySchedule

_NO_NIGHTLY_CLAIM: dict[str, Any] = {"nightly_claim_token": None, "nightly_claimed_until": None}


class SqlMerchantRepository(MerchantRepository):
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(self, merchant: Merchant, *, at: datetime) -> Merchant:
        async with unique_violations():
            result = await self.conn.execute(
                merchants.insert()
                .values(slug=merchant.slug, created_at=at, **_settings_columns(merchant.settings))
                .returning(merchants.c.id)
            )
        merchant.id = MerchantId(result.scalar_one())
        return merchant

    async def get(self, merchant_id: MerchantId) -> Merchant | None:
        return await self._one(merchants.c.id == merchant_id)

    async def get_by_slug(self, slug: str) -> Merchant | None:
        return await self._one(merchants.c.slug == slug)

    async def update_settings(self, merchant_id: MerchantId, settings: MerchantSettings) -> None:
        await self.conn.execute(
            merchants.update()
            .where(merchants.c.id == merchant_id)
            .values(**_settings_columns(settings))
        )

    async def count(self) -> int:
        result = await self.conn.execute(sa.select(sa.func.count()).select_from(merchants))
        return int(result.scalar_one())

    async def add_first(self, merchant: Merchant, *, at: datetime) -> Merchant | None:
        # SQLite: writers already run one at a time (BEGIN IMMEDIATE). PostgreSQL: a lock
        # mode that conflicts with itself and with inserts keeps a second setup waiting
        # until the first commits, and then it sees the first merchant.
        if self.conn.dialect.name == "postgresql":
            await self.conn.execute(sa.text("LOCK TABLE merchants IN SHARE ROW EXCLUSIVE MODE"))
        if await self.count():
            return None
        return await self.add(merchant, at=at)

    async def update_smtp(self, merchant_id: MerchantId, smtp: SmtpSettings) -> None:
        await self.conn.execute(
            merchants.update()
            .where(merchants.c.id == merchant_id)
            .values(
                smtp_host=smtp.host,
                smtp_port=smtp.port,
                smtp_username=smtp.username,
                smtp_sender=smtp.sender,
                smtp_security=smtp.security,
            )
        )

    async def set_smtp_password(self, merchant_id: MerchantId, encrypted: str | None) -> None:
        await self.conn.execute(
            merchants.update()
            .where(merchants.c.id == merchant_id)
            .values(smtp_password_encrypted=encrypted)
        )

    async def record_test_email(self, merchant_id: MerchantId, *, at: datetime) -> None:
        await self.conn.execute(
            merchants.update().where(merchants.c.id == merchant_id).values(test_email_sent_at=at)
        )

    async def smtp_password(self, merchant_id: MerchantId) -> str | None:
        result = await self.conn.execute(
            sa.select(merchants.c.smtp_password_encrypted).where(merchants.c.id == merchant_id)
        )
        return result.scalar_one_or_none()

    async def nightly_schedules(self) -> list[NightlySchedule]:
        rows = await self.conn.execute(
            sa.select(
                merchants.c.id,
                merchants.c.timezone,
                merchants.c.last_nightly_on,
                merchants.c.nightly_claimed_until,
            ).order_by(merchants.c.id)
        )
        return [
            NightlySchedule(MerchantId(merchant_id), timezone, last_on, claimed_until)
            for merchant_id, timezone, last_on, claimed_until in rows
        ]

    async def claim_nightly(
        self, merchant_id: MerchantId, *, today: date, token: str, at: datetime, until: datetime
    ) -> bool:
        result = await self.conn.execute(
            merchants.update()
            .where(
                merchants.c.id == merchant_id,
                sa.or_(merchants.c.last_nightly_on.is_(None), merchants.c.last_nightly_on < today),
                unclaimed(merchants.c.nightly_claimed_until, at),
            )
            .values(nightly_claim_token=token, nightly_claimed_until=until)
        )
        return result.rowcount == 1

    async def finish_nightly(self, merchant_id: MerchantId, *, today: date, token: str) -> bool:
        result = await self.conn.execute(
            merchants.update()
            .where(merchants.c.id == merchant_id, merchants.c.nightly_claim_token == token)
            .values(last_nightly_on=today, **_NO_NIGHTLY_CLAIM)
        )
        return result.rowcount == 1

    async def release_nightly(self, merchant_id: MerchantId, *, token: str) -> None:
        await self.conn.execute(
            merchants.update()
            .where(merchants.c.id == merchant_id, merchants.c.nightly_claim_token == token)
            .values(**_NO_NIGHTLY_CLAIM)
        )

    async def _one(self, condition: sa.ColumnElement[bool]) -> Merchant | None:
        row = (await self.conn.execute(sa.select(merchants).where(condition))).mappings().first()
        if row is None:
            return None
        settings = MerchantSettings(
            name=row["name"],
            shop_url=row["shop_url"],
            referral_link_template=row["referral_link_template"],
            referral_bonus=Points(row["referral_bonus_cents"]),
            validity_months=row["validity_months"],
            locale=row["locale"],
            timezone=row["timezone"],
            send_system_emails=row["send_system_emails"],
            newsletter_reward=Points(row["newsletter_reward_cents"]),
            newsletter_take_back=row["newsletter_take_back"],
            pre_expiry_notify=row["pre_expiry_notify"],
            pre_expiry_days=row["pre_expiry_days"],
            ecomail_add=EcomailAdd(row["ecomail_add"]),
            ecomail_reconcile=Schedule(row["ecomail_reconcile"]),
        )
        smtp = SmtpSettings(
            host=row["smtp_host"],
            port=row["smtp_port"],
            username=row["smtp_username"],
            sender=row["smtp_sender"],
            security=row["smtp_security"],
        )
        return Merchant(slug=row["slug"], settings=settings, id=MerchantId(row["id"]), smtp=smtp)


def _settings_columns(settings: MerchantSettings) -> dict[str, Any]:
    return {
        "name": settings.name,
        "shop_url": settings.shop_url,
        "referral_link_template": settings.referral_link_template,
        "referral_bonus_cents": settings.referral_bonus.hundredths,
        "validity_months": settings.validity_months,
        "locale": settings.locale,
        "timezone": settings.timezone,
        "send_system_emails": settings.send_system_emails,
        "newsletter_reward_cents": settings.newsletter_reward.hundredths,
        "newsletter_take_back": settings.newsletter_take_back,
        "pre_expiry_notify": settings.pre_expiry_notify,
        "pre_expiry_days": settings.pre_expiry_days,
        "ecomail_add": settings.ecomail_add.value,
        "ecomail_reconcile": settings.ecomail_reconcile.value,
    }
