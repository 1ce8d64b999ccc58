"""Migration 0010 (marketing consent) on a database with an active Ecomail integration, on
SQLite and PostgreSQL: existing customers become ``unknown``, the merchant's choice of who is
added is ``consented``, and the integration, its contacts and its notifications keep working."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from ellity.adapters.sql import migrate
from ellity.adapters.sql.database import Database, create_database
from ellity.adapters.sql.unit_of_work import SqlUnitOfWorkFactory
from ellity.domain.model.consent import (
    ConsentCounts,
    EcomailAdd,
    MarketingConsent,
    membership_plan,
)
from ellity.domain.model.ids import CustomerId, MerchantId
from ellity.ports.storage import ClaimedContact
from tests.conftest import _recreate_postgres_database, admin_statements

SHOP = MerchantId(1)
ANN, BOB = CustomerId(1), CustomerId(2)
NOW = datetime(2026, 12, 7, 9, tzinfo=UTC)
LEASE = timedelta(minutes=5)
T = "'2026-12-01 08:00:00+00:00'"

BEFORE_CONSENT = (
    "INSERT INTO merchants (id, slug, name, shop_url, referral_link_template,"
    " referral_bonus_cents, validity_months, locale, timezone, created_at, send_system_emails,"
    " smtp_host, smtp_port, smtp_username, smtp_sender, smtp_security,"
    " newsletter_reward_cents, newsletter_take_back, pre_expiry_notify, pre_expiry_days)"
    f" VALUES (1, 'shop', 'Shop', '', '{{shop_url}}/?ref={{code}}', 0, 12, 'cs',"
    f" 'Europe/Prague', {T}, false, '', 587, '', '', 'starttls', 5000, true, false, 14)",
    "INSERT INTO customers (id, merchant_id, email, email_key, referral_code, created_at,"
    " updated_at, first_name, last_name, first_name_key, last_name_key, registered,"
    " balance_cents, next_expiry_cents)"
    f" VALUES (1, 1, 'Ann@Shop.cz', 'ann@shop.cz', 'AAAAAAAA', {T}, {T}, '', '', '', '',"
    " true, 0, 0),"
    f" (2, 1, 'bob@shop.cz', 'bob@shop.cz', 'BBBBBBBB', {T}, {T}, '', '', '', '', true, 0, 0)",
    "INSERT INTO customers (id, merchant_id, shop_customer_id, referral_code, created_at,"
    " updated_at, first_name, last_name, first_name_key, last_name_key, registered,"
    " balance_cents, next_expiry_cents)"
    f" VALUES (3, 1, 'shop-3', 'CCCCCCCC', {T}, {T}, '', '', '', '', true, 0, 0)",
    "INSERT INTO ecomail_integrations (merchant_id, api_key_encrypted, key_hint, list_id,"
    " list_name, active, activated_at, backfill_after_id, backfill_marked, updated_at)"
    f" VALUES (1, 'sealed', '1234', '7', 'Customers', true, {T}, 3, 2, {T})",
    "INSERT INTO ecomail_contacts (customer_id, merchant_id, change_seq, attempts, in_list,"
    " added_at, synced_at)"
    f" VALUES (1, 1, 1, 0, true, {T}, {T}), (2, 1, 1, 0, true, {T}, {T})",
    "INSERT INTO newsletter_notifications (merchant_id, received_at, email, status, list_id,"
    " state, available_at, attempts)"
    f" VALUES (1, {T}, 'Ann@Shop.cz', 'SUBSCRIBED', '7', 'pending', {T}, 0)",
)


@pytest.fixture(params=["sqlite", "postgres"])
async def old_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of its own, migrated up to 0009."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        yield url
        return
    name = f"ellity_consent_migration_{os.getpid()}"
    yield await _recreate_postgres_database(name)
    await admin_statements(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_an_active_integration_keeps_working_and_its_customers_become_unknown(
    old_database_url: str,
) -> None:
    config = migrate.alembic_config(old_database_url)
    await asyncio.to_thread(command.upgrade, config, "0009")
    database: Database = create_database(old_database_url)
    try:
        async with database.write_engine.begin() as conn:
            for statement in BEFORE_CONSENT:
                await conn.execute(sa.text(statement))
    finally:
        await database.dispose()

    await asyncio.to_thread(command.upgrade, config, "head")

    database = create_database(old_database_url)
    uow_factory = SqlUnitOfWorkFactory(database)
    try:
        async with uow_factory() as uow:
            assert await uow.ecomail.active_list(SHOP) == "7"
            merchant = await uow.merchants.get(SHOP)
            assert merchant is not None
            assert merchant.settings.ecomail_add is EcomailAdd.CONSENTED
            ann = await uow.customers.get(SHOP, ANN)
            assert ann is not None
            assert ann.marketing_consent is MarketingConsent.UNKNOWN
            assert (ann.consent_source, ann.consent_changed_at) == (None, None)
            assert await uow.customers.consent_history(SHOP, ANN) == []
            counts = await uow.views.consent_counts(SHOP)
            assert counts == ConsentCounts(unknown=2, without_email=1)
            plan = membership_plan(merchant.settings.ecomail_add, counts)
            assert (plan.added, plan.updated_only, plan.never_added) == (0, 2, 0)
            # the contacts Ellity wrote before stay members: they are written again
            await uow.contacts.mark_changed(SHOP, [ANN, BOB], at=NOW)
            claimed = await uow.contacts.claim(SHOP, token="t", now=NOW, lease=LEASE, limit=10)
            assert sorted(claimed, key=lambda c: c.customer_id) == [
                ClaimedContact(ANN, in_list=True, unsubscribe=False),
                ClaimedContact(BOB, in_list=True, unsubscribe=False),
            ]
            assert await uow.contacts.add_attempt(SHOP, ANN) is None
            # the notifications stored before can be matched by email
            assert not await uow.newsletter.unsubscribed_since(SHOP, "ann@shop.cz", NOW)
            await uow.commit()
        async with database.engine.connect() as conn:
            key = (
                await conn.execute(sa.text("SELECT email_key FROM newsletter_notifications"))
            ).scalar_one()
        assert key == "ann@shop.cz"
    finally:
        await database.dispose()
