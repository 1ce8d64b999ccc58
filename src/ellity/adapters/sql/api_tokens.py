"""The e-shops' API tokens in SQL (only a digest of each token is stored)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ellity.adapters.sql.tables.merchants import api_tokens
from ellity.domain.model.api_token import ApiToken
from ellity.domain.model.ids import MerchantId
from ellity.ports.storage.merchants import ApiTokenRepository


def _api_token(row: Any) -> ApiToken:
    return ApiToken(
        id=row.id,
        merchant_id=MerchantId(row.merchant_id),
        name=row.name,
        hint=row.hint,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


_TOKEN_COLUMNS = (
    api_tokens.c.id,
    api_tokens.c.merchant_id,
    api_tokens.c.name,
    api_tokens.c.hint,
    api_tokens.c.created_at,
    api_tokens.c.last_used_at,
    api_tokens.c.revoked_at,
)


class SqlApiTokenRepository(ApiTokenRepository):
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(
        self, merchant_id: MerchantId, *, name: str, token_digest: str, hint: str, at: datetime
    ) -> ApiToken:
        result = await self.conn.execute(
            api_tokens.insert()
            .values(
                merchant_id=merchant_id,
                name=name,
                token_hash=token_digest,
                hint=hint,
                created_at=at,
            )
            .returning(*_TOKEN_COLUMNS)
        )
        return _api_token(result.one())

    async def find_active(self, token_digest: str) -> ApiToken | None:
        row = (
            await self.conn.execute(
                sa.select(*_TOKEN_COLUMNS).where(
                    api_tokens.c.token_hash == token_digest, api_tokens.c.revoked_at.is_(None)
                )
            )
        ).first()
        return None if row is None else _api_token(row)

    async def list(self, merchant_id: MerchantId) -> list[ApiToken]:
        rows = await self.conn.execute(
            sa.select(*_TOKEN_COLUMNS)
            .where(api_tokens.c.merchant_id == merchant_id)
            .order_by(api_tokens.c.id.desc())
        )
        return [_api_token(row) for row in rows]

    async def revoke(self, merchant_id: MerchantId, token_id: int, *, at: datetime) -> bool:
        result = await self.conn.execute(
            api_tokens.update()
            .where(
                api_tokens.c.merchant_id == merchant_id,
                api_tokens.c.id == token_id,
                api_tokens.c.revoked_at.is_(None),
            )
            .values(revoked_at=at)
        )
        return bool(result.rowcount)

    async def touch(self, token_id: int, *, at: datetime, unless_used_after: datetime) -> bool:
        result = await self.conn.execute(
            api_tokens.update()
            .where(
                api_tokens.c.id == token_id,
                sa.or_(
                    api_tokens.c.last_used_at.is_(None),
                    api_tokens.c.last_used_at <= unless_used_after,
                ),
            )
            .values(last_used_at=at)
        )
        return bool(result.rowcount)
