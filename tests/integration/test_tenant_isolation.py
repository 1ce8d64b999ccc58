"""A customer of merchant A is invisible to every service call made for merchant B."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from ellity.adapters.system_clock import SecretsRandom, SystemClock
from ellity.domain.model.errors import CustomerNotFound
from ellity.domain.model.ids import MerchantId
from ellity.domain.model.merchant import MerchantSettings
from ellity.domain.model.money import Points
from ellity.domain.services import customer_pages, customers, merchants, points
from ellity.ports.storage import UnitOfWorkFactory
from tests.fakes import FakePasswordHasher

CLOCK, RNG = SystemClock(), SecretsRandom()


async def make_merchant(uow_factory: UnitOfWorkFactory, slug: str) -> MerchantId:
    merchant = await merchants.create_merchant(
        slug=slug,
        settings=MerchantSettings(name=slug, shop_url=f"https://{slug}.example.cz"),
        admin_email=f"admin@{slug}.example.cz",
        admin_password="a long password",
        uow=uow_factory(),
        clock=CLOCK,
        hasher=FakePasswordHasher(),
    )
    assert merchant.id is not None
    return merchant.id


async def test_merchant_b_cannot_reach_merchant_a_customer_through_any_service(
    uow_factory: UnitOfWorkFactory,
) -> None:
    a = await make_merchant(uow_factory, "alpha")
    b = await make_merchant(uow_factory, "beta")
    created = await customers.upsert_customer(
        a,
        customers.CustomerInput(email="ann@example.cz", shop_customer_id="s-1"),
        uow=uow_factory(),
        clock=CLOCK,
        rng=RNG,
    )
    ann = created.view.customer.id
    assert ann is not None
    await points.earn_points(
        a, ann, Points.parse("100"), order_ref="o-1", uow=uow_factory(), clock=CLOCK
    )

    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "get": lambda: customers.get_customer(b, ann, uow=uow_factory(), clock=CLOCK),
        "update": lambda: customers.update_customer(
            b, ann, customers.CustomerInput(first_name="X"), uow=uow_factory(), clock=CLOCK, rng=RNG
        ),
        "register": lambda: customers.register_customer(b, ann, uow=uow_factory(), clock=CLOCK),
        "pin": lambda: customers.regenerate_pin(b, ann, uow=uow_factory(), clock=CLOCK, rng=RNG),
        "snapshot": lambda: customers.contact_snapshot(b, ann, uow=uow_factory(), clock=CLOCK),
        "earn": lambda: points.earn_points(
            b, ann, Points(100), order_ref="o-2", uow=uow_factory(), clock=CLOCK
        ),
        "spend": lambda: points.spend_points(b, ann, Points(100), uow=uow_factory(), clock=CLOCK),
        "adjust": lambda: points.adjust_points(
            b, ann, Points(-100), note="x", uow=uow_factory(), clock=CLOCK
        ),
        "ledger": lambda: points.ledger_entries(b, ann, uow=uow_factory()),
        "page": lambda: customer_pages.customer_detail(b, ann, uow=uow_factory(), clock=CLOCK),
    }
    for name, call in calls.items():
        with pytest.raises(CustomerNotFound):
            await call()
        assert name
    assert await customers.contact_snapshots(b, [ann], uow=uow_factory(), clock=CLOCK) == []
    assert (
        await customers.find_customer_by_email(b, "ann@example.cz", uow=uow_factory(), clock=CLOCK)
        is None
    )
    assert [
        batch
        async for batch in customers.all_contact_snapshots(b, uow_factory=uow_factory, clock=CLOCK)
    ] == []

    # B's upsert with the same email and shop id creates B's own customer
    own = await customers.upsert_customer(
        b,
        customers.CustomerInput(
            email="ANN@example.cz", shop_customer_id="s-1", first_name="Beta Ann"
        ),
        uow=uow_factory(),
        clock=CLOCK,
        rng=RNG,
    )
    assert own.created and own.view.customer.id != ann
    # B's expiry run and order references do not touch A
    assert await points.expire_due_points(b, uow_factory=uow_factory, clock=CLOCK) == 0
    assert own.view.customer.id is not None
    await points.earn_points(
        b, own.view.customer.id, Points(100), order_ref="o-1", uow=uow_factory(), clock=CLOCK
    )

    untouched = await customers.get_customer(a, ann, uow=uow_factory(), clock=CLOCK)
    assert untouched.customer.first_name == ""
    assert untouched.summary.balance == Points.parse("100")
    assert len(await points.ledger_entries(a, ann, uow=uow_factory())) == 1
