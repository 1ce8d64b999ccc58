"""The customer export use case on the in-memory fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ellity.domain.model.contact import FIELD_NAMES
from ellity.domain.model.errors import MerchantNotFound
from ellity.domain.model.ids import MerchantId
from ellity.domain.model.merchant import Merchant
from ellity.domain.model.money import Points
from ellity.domain.services.customers import contact_snapshots
from ellity.domain.services.export import (
    EXPORT_COLUMNS,
    EXPORT_TABLE,
    count_customers,
    export_customers,
)
from ellity.domain.services.points import adjust_points, earn_points, spend_points
from ellity.ports.export import Cell
from ellity.ports.storage import UnitOfWorkFactory
from tests.fakes import FakeClock, JsonLinesTableEncoder
from tests.unit.conftest import NewCustomer

P = Points.parse
ENCODER = JsonLinesTableEncoder()


def stored(merchant: Merchant) -> MerchantId:
    assert merchant.id is not None
    return merchant.id


async def collect(chunks: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in chunks]


async def export_table(
    merchant: Merchant, uow_factory: UnitOfWorkFactory, clock: FakeClock
) -> tuple[list[str], list[list[Cell]]]:
    chunks = await collect(
        export_customers(stored(merchant), uow_factory=uow_factory, encoder=ENCODER, clock=clock)
    )
    return ENCODER.decode(b"".join(chunks))


def test_the_columns_are_email_and_names_then_the_eleven_fields_in_the_specified_order() -> None:
    assert EXPORT_COLUMNS == (
        "email",
        "first_name",
        "last_name",
        "ellity_credit",
        "ellity_credit_num",
        "ellity_pin",
        "ellity_registered",
        "ellity_next_expiration_date",
        "ellity_next_expiration_value",
        "ellity_next_expiration_value_num",
        "ellity_last_change_date",
        "ellity_last_change_value",
        "ellity_referral_code",
        "ellity_referral_link",
    )
    assert EXPORT_COLUMNS[3:] == FIELD_NAMES


def test_the_columns_declare_which_hold_numbers_and_dates() -> None:
    kinds = {column.name: column.kind for column in EXPORT_TABLE}
    assert {name for name, kind in kinds.items() if kind == "number"} == {
        "ellity_credit",
        "ellity_credit_num",
        "ellity_next_expiration_value",
        "ellity_next_expiration_value_num",
        "ellity_last_change_value",
    }
    assert {name for name, kind in kinds.items() if kind == "date"} == {
        "ellity_next_expiration_date",
        "ellity_last_change_date",
    }
    assert {name for name, kind in kinds.items() if kind == "text"} == {
        "email",
        "first_name",
        "last_name",
        "ellity_pin",
        "ellity_registered",
        "ellity_referral_code",
        "ellity_referral_link",
    }


async def test_every_customer_is_exported_with_the_values_the_sync_writes(
    merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
    clock: FakeClock,
) -> None:
    mid = stored(merchant)
    ann = await new_customer(merchant, email="ann@example.cz", first_name="Anna", last_name="Nová")
    bob = await new_customer(merchant, email="bob@example.cz", registered=True)
    assert ann.id is not None and bob.id is not None
    await earn_points(mid, ann.id, P("1250.50"), order_ref="o-1", uow=uow_factory(), clock=clock)
    await spend_points(mid, ann.id, P("120"), uow=uow_factory(), clock=clock)
    await earn_points(mid, bob.id, P("10"), order_ref="o-2", uow=uow_factory(), clock=clock)
    await adjust_points(mid, bob.id, P("-10"), note="typo", uow=uow_factory(), clock=clock)

    header, rows = await export_table(merchant, uow_factory, clock)

    snapshots = await contact_snapshots(
        mid, [ann.id, bob.id], uow=uow_factory(read_only=True), clock=clock
    )
    assert header == list(EXPORT_COLUMNS)
    assert rows == [
        [s.email, s.first_name, s.last_name, *[s.fields[name] for name in FIELD_NAMES]]
        for s in snapshots
    ]
    assert rows[0][:6] == ["ann@example.cz", "Anna", "Nová", "1 130,50", 1130, ann.pin]
    assert rows[0][EXPORT_COLUMNS.index("ellity_last_change_value")] == "-120"
    assert rows[1][EXPORT_COLUMNS.index("ellity_pin")] == ""  # registered: no PIN
    assert rows[1][EXPORT_COLUMNS.index("ellity_next_expiration_date")] == ""  # nothing held


async def test_a_customer_without_email_is_exported_with_an_empty_email_cell(
    clock: FakeClock, merchant: Merchant, new_customer: NewCustomer, uow_factory: UnitOfWorkFactory
) -> None:
    await new_customer(merchant, shop_customer_id="shop-7", first_name="Eva")
    _, rows = await export_table(merchant, uow_factory, clock)
    assert [row[:2] for row in rows] == [["", "Eva"]]


async def test_the_header_comes_first_then_one_chunk_per_batch_of_customers(
    clock: FakeClock, merchant: Merchant, new_customer: NewCustomer, uow_factory: UnitOfWorkFactory
) -> None:
    for n in range(5):
        await new_customer(merchant, email=f"c{n}@example.cz")
    chunks = await collect(
        export_customers(
            stored(merchant), uow_factory=uow_factory, encoder=ENCODER, batch_size=2, clock=clock
        )
    )
    assert len(chunks) == 4
    assert ENCODER.decode(chunks[0]) == (list(EXPORT_COLUMNS), [])
    batches = [chunk.decode().splitlines() for chunk in chunks[1:]]
    assert [len(lines) for lines in batches] == [2, 2, 1]
    _, rows = ENCODER.decode(b"".join(chunks))
    assert [row[0] for row in rows] == [f"c{n}@example.cz" for n in range(5)]


async def test_a_merchant_without_customers_gets_the_header_alone(
    clock: FakeClock, merchant: Merchant, uow_factory: UnitOfWorkFactory
) -> None:
    chunks = await collect(
        export_customers(stored(merchant), uow_factory=uow_factory, encoder=ENCODER, clock=clock)
    )
    assert chunks == [ENCODER.header(EXPORT_TABLE)]


async def test_another_merchants_customers_are_never_exported(
    clock: FakeClock,
    merchant: Merchant,
    other_merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
) -> None:
    await new_customer(merchant, email="ann@example.cz")
    await new_customer(other_merchant, email="bob@example.com")
    await new_customer(merchant, email="cyril@example.cz")
    _, anna_rows = await export_table(merchant, uow_factory, clock)
    _, bob_rows = await export_table(other_merchant, uow_factory, clock)
    assert [row[0] for row in anna_rows] == ["ann@example.cz", "cyril@example.cz"]
    assert [row[0] for row in bob_rows] == ["bob@example.com"]


async def test_progress_is_told_how_many_customers_were_handed_over_after_each_batch(
    clock: FakeClock, merchant: Merchant, new_customer: NewCustomer, uow_factory: UnitOfWorkFactory
) -> None:
    for n in range(5):
        await new_customer(merchant, email=f"c{n}@example.cz")
    seen: list[int] = []
    chunks = export_customers(
        stored(merchant),
        uow_factory=uow_factory,
        encoder=ENCODER,
        progress=seen.append,
        batch_size=2,
        clock=clock,
    )
    await anext(chunks)  # the header
    await anext(chunks)  # the first batch, not yet handed over completely
    assert seen == []
    await anext(chunks)
    assert seen == [2]
    await collect(chunks)
    assert seen == [2, 4, 5]


async def test_an_unknown_merchant_is_refused_before_any_byte(
    clock: FakeClock,
    uow_factory: UnitOfWorkFactory,
) -> None:
    chunks = export_customers(
        MerchantId(404), uow_factory=uow_factory, encoder=ENCODER, clock=clock
    )
    with pytest.raises(MerchantNotFound):
        await anext(chunks)


async def test_customers_are_counted_per_merchant(
    merchant: Merchant,
    other_merchant: Merchant,
    new_customer: NewCustomer,
    uow_factory: UnitOfWorkFactory,
) -> None:
    await new_customer(merchant, email="ann@example.cz")
    await new_customer(merchant, shop_customer_id="no-email")
    await new_customer(other_merchant, email="bob@example.com")
    assert await count_customers(stored(merchant), uow=uow_factory(read_only=True)) == 2
    assert await count_customers(stored(other_merchant), uow=uow_factory(read_only=True)) == 1
    with pytest.raises(MerchantNotFound):
        await count_customers(MerchantId(404), uow=uow_factory(read_only=True))
