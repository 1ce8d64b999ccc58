"""A merchant's Ecomail integration in SQL: the encrypted API key, the list, and how far the
backfill of every customer has come."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ellity.adapters.sql.tables.columns import dialect_insert
from ellity.adapters.sql.tables.contact_sync import ecomail_integrations
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.domain.model.integration import Backfill, EcomailIntegration
from ellity.ports.storage.contact_sync import EcomailRepository

_i = ecomail_integrations.c


class SqlEcomailRepository(EcomailRepository):
    """``made_work``: a backfill was requested (activation, re-push); the unit of work wakes
    the worker after the commit, so the backfill starts at once, not at the minute's tick."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.made_work = False

    async def get(self, merchant_id: MerchantId) -> EcomailIntegration | None:
        row = (
            await self.conn.execute(
                sa.select(ecomail_integrations).where(_i.merchant_id == merchant_id)
            )
        ).first()
        if row is None:
            return None
        backfill = None
        if row.backfill_requested_at is not None:
            backfill = Backfill(
                requested_at=row.backfill_requested_at,
                after_id=CustomerId(row.backfill_after_id),
                marked=row.backfill_marked,
                finished_marking_at=row.backfill_finished_at,
            )
        return EcomailIntegration(
            merchant_id=MerchantId(row.merchant_id),
            key_hint=row.key_hint,
            list_id=row.list_id,
            list_name=row.list_name,
            active=row.active,
            activated_at=row.activated_at,
            backfill=backfill,
            last_success_at=row.last_success_at,
        )

    async def api_key(self, merchant_id: MerchantId) -> str | None:
        result = await self.conn.execute(
            sa.select(_i.api_key_encrypted).where(_i.merchant_id == merchant_id)
        )
        key: str | None = result.scalar_one_or_none()
        return key

    async def save_key(
        self, merchant_id: MerchantId, *, encrypted: str, hint: str, at: datetime
    ) -> None:
        values = {
            "api_key_encrypted": encrypted,
            "key_hint": hint,
            "list_id": None,
            "list_name": "",
            "active": False,
            "backfill_requested_at": None,
            "backfill_after_id": 0,
            "backfill_marked": 0,
            "backfill_finished_at": None,
            "updated_at": at,
        }
        insert = dialect_insert(self.conn.dialect, ecomail_integrations).values(
            merchant_id=merchant_id, **values
        )
        await self.conn.execute(
            insert.on_conflict_do_update(index_elements=[_i.merchant_id], set_=values)
        )

    async def activate(
        self, merchant_id: MerchantId, *, list_id: str, list_name: str, at: datetime
    ) -> None:
        await self._update(
            merchant_id,
            list_id=list_id,
            list_name=list_name[:200],
            active=True,
            activated_at=at,
            **_backfill_from_start(at),
        )
        self.made_work = True

    async def deactivate(self, merchant_id: MerchantId, *, at: datetime) -> None:
        await self._update(merchant_id, active=False, updated_at=at)

    async def request_backfill(self, merchant_id: MerchantId, *, at: datetime) -> None:
        await self._update(merchant_id, **_backfill_from_start(at))
        self.made_work = True

    async def advance_backfill(
        self,
        merchant_id: MerchantId,
        *,
        after_id: CustomerId,
        marked: int,
        finished_at: datetime | None,
    ) -> None:
        await self._update(
            merchant_id,
            backfill_after_id=after_id,
            backfill_marked=marked,
            backfill_finished_at=finished_at,
        )

    async def record_success(self, merchant_id: MerchantId, *, at: datetime) -> None:
        await self._update(merchant_id, last_success_at=at)

    async def active_list(self, merchant_id: MerchantId) -> str | None:
        result = await self.conn.execute(
            sa.select(_i.list_id).where(_i.merchant_id == merchant_id, _i.active.is_(True))
        )
        list_id: str | None = result.scalar_one_or_none()
        return list_id

    async def backfilling(self) -> list[MerchantId]:
        result = await self.conn.execute(
            sa.select(_i.merchant_id)
            .where(
                _i.active.is_(True),
                _i.backfill_requested_at.is_not(None),
                _i.backfill_finished_at.is_(None),
            )
            .order_by(_i.merchant_id)
        )
        return [MerchantId(merchant_id) for merchant_id in result.scalars()]

    async def _update(self, merchant_id: MerchantId, **values: Any) -> None:
        await self.conn.execute(
            ecomail_integrations.update().where(_i.merchant_id == merchant_id).values(**values)
        )


def _backfill_from_start(at: datetime) -> dict[str, Any]:
    return {
        "backfill_requested_at": at,
        "backfill_after_id": 0,
        "backfill_marked": 0,
        "backfill_finished_at": None,
        "updated_at": at,
    }
