"""The "Ecomail fields" panel: the chosen customer's values are the sync's own snapshot, the
events carry what their builders make, and only the merchant's own customers are found."""

from __future__ import annotations

import pytest

from ellity.domain.model.integration import EventLabel
from ellity.domain.model.merchant import Merchant
from ellity.domain.model.money import Points
from ellity.domain.services import points
from ellity.domain.services.customers import contact_snapshot
from ellity.domain.services.ecomail_fields import fields_panel
from tests.fakes import FakeClock, InMemoryStore
from tests.unit.conftest import NewCustomer


async def test_nobody_chosen_shows_no_values(
    store: InMemoryStore, merchant: Merchant, clock: FakeClock
) -> None:
    assert merchant.id is not None
    panel = await fields_panel(merchant.id, "  ", uow=store.unit_of_work(), clock=clock)
    assert (panel.snapshot, panel.not_found, panel.events) == (None, False, None)


async def test_a_customer_chosen_by_email_or_id_shows_the_snapshot_the_sync_writes(
    store: InMemoryStore, merchant: Merchant, new_customer: NewCustomer, clock: FakeClock
) -> None:
    assert merchant.id is not None
    ann = await new_customer(merchant, email="Ann@Example.cz")
    assert ann.id is not None
    await points.earn_points(
        merchant.id, ann.id, Points.parse("1250.50"), order_ref="o-1",
        uow=store.unit_of_work(), clock=clock,
    )  # fmt: skip
    written = await contact_snapshot(merchant.id, ann.id, uow=store.unit_of_work(), clock=clock)
    for asked in ("ann@example.CZ", f" {ann.id} "):
        panel = await fields_panel(merchant.id, asked, uow=store.unit_of_work(), clock=clock)
        assert panel.snapshot == written
        assert panel.snapshot.fields["ellity_credit"] == "1 250,50"
    assert panel.events is not None
    credit = panel.events[EventLabel.CREDIT]
    assert (credit["change"], credit["balance"], credit["reason"]) == ("1250.50", "1250.50", "earn")
    expiry = panel.events[EventLabel.EXPIRY]
    assert expiry["expiration_date"] == written.fields["ellity_next_expiration_date"]
    assert EventLabel.PIN not in panel.events  # nothing real to show: the page lists its keys


async def test_a_customer_without_any_change_has_no_event_examples(
    store: InMemoryStore, merchant: Merchant, new_customer: NewCustomer, clock: FakeClock
) -> None:
    assert merchant.id is not None
    ben = await new_customer(merchant, email="ben@example.cz")
    panel = await fields_panel(merchant.id, str(ben.id), uow=store.unit_of_work(), clock=clock)
    assert panel.snapshot is not None and panel.events == {}


@pytest.mark.parametrize("asked", ["carl@example.com", "nobody@example.cz", "9" * 40, "a b", "0"])
async def test_another_merchants_or_an_unknown_customer_is_not_found(
    *,
    store: InMemoryStore,
    merchant: Merchant,
    other_merchant: Merchant,
    new_customer: NewCustomer,
    clock: FakeClock,
    asked: str,
) -> None:
    assert merchant.id is not None
    await new_customer(other_merchant, email="carl@example.com")
    panel = await fields_panel(merchant.id, asked, uow=store.unit_of_work(), clock=clock)
    assert (panel.snapshot, panel.not_found, panel.asked) == (None, True, asked)


async def test_another_merchants_customer_id_is_not_found(
    store: InMemoryStore,
    merchant: Merchant,
    other_merchant: Merchant,
    new_customer: NewCustomer,
    clock: FakeClock,
) -> None:
    assert merchant.id is not None
    carl = await new_customer(other_merchant, email="carl@example.com")
    panel = await fields_panel(merchant.id, str(carl.id), uow=store.unit_of_work(), clock=clock)
    assert panel.not_found and panel.snapshot is None
