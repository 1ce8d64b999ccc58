"""Staff users in SQL; their emails are unique across all merchants."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ellity.adapters.sql.tables.merchants import staff_users
from ellity.adapters.sql.unique import unique_violations
from ellity.domain.model.customer import email_key
from ellity.domain.model.ids import MerchantId, StaffId
from ellity.domain.model.money import LOCALES, Locale
from ellity.domain.model.staff import StaffUser
from ellity.ports.storage.merchants import StaffRepository


class SqlStaffRepository(StaffRepository):
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(
        self, merchant_id: MerchantId, *, email: str, password_hash: str, at: datetime
    ) -> StaffId:
        async with unique_violations():
            result = await self.conn.execute(
                staff_users.insert()
                .values(
                    merchant_id=merchant_id,
                    email=email,
                    email_key=email_key(email),
                    password_hash=password_hash,
                    created_at=at,
                )
                .returning(staff_users.c.id)
            )
        return StaffId(int(result.scalar_one()))

    async def get(self, staff_id: StaffId) -> StaffUser | None:
        return await self._first(staff_users.c.id == staff_id)

    async def find_by_email(self, email: str) -> StaffUser | None:
        return await self._first(staff_users.c.email_key == email_key(email))

    async def _first(self, condition: sa.ColumnElement[bool]) -> StaffUser | None:
        row = (
            await self.conn.execute(
                sa.select(
                    staff_users.c.id,
                    staff_users.c.merchant_id,
                    staff_users.c.email,
                    staff_users.c.password_hash,
                    staff_users.c.ui_language,
                ).where(condition)
            )
        ).first()
        if row is None:
            return None
        staff_id, merchant_id, email, password_hash, language = row
        return StaffUser(
            StaffId(staff_id),
            MerchantId(merchant_id),
            email,
            password_hash,
            language if language in LOCALES else None,
        )

    async def set_ui_language(self, staff_id: StaffId, language: Locale) -> bool:
        result = await self.conn.execute(
            staff_users.update().where(staff_users.c.id == staff_id).values(ui_language=language)
        )
        return bool(result.rowcount)
