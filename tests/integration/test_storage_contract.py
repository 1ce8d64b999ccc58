"""One contract for every storage backend: the fake, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from ellity.domain.model.consent import ConsentSource, MarketingConsent
from ellity.domain.model.contact import LoyaltyRow, loyalty_row
from ellity.domain.model.customer import Customer
from ellity.domain.model.customer_query import parse_customer_query
from ellity.domain.model.ids import CustomerId, MerchantId, StaffId
from ellity.domain.model.ledger import Entry, EntryKind, Expiration, Ledger
from ellity.domain.model.merchant import Merchant, MerchantSettings, SmtpSettings
from ellity.domain.model.money import Points
from ellity.ports.storage import UniqueViolation, UnitOfWorkFactory

T0 = datetime(2025, 1, 31, 10, 0, tzinfo=UTC)


def settings(**changes: object) -> MerchantSettings:
    base: dict[str, object] = {"name": "Shop", "shop_url": "https://shop.example.cz"}
    return MerchantSettings(**{**base, **changes})  # type: ignore[arg-type]


async def add_merchant(uow_factory: UnitOfWorkFactory, slug: str = "shop") -> MerchantId:
    async with uow_factory() as uow:
        merchant = await uow.merchants.add(Merchant(slug=slug, settings=settings()), at=T0)
        await uow.commit()
    assert merchant.id is not None
    return merchant.id


def new_customer(merchant_id: MerchantId, code: str, **fields: Any) -> Customer:
    return Customer(
        merchant_id=merchant_id, referral_code=code, created_at=T0, updated_at=T0, **fields
    )


async def add_customer(
    uow_factory: UnitOfWorkFactory, merchant_id: MerchantId, code: str, **fields: object
) -> CustomerId:
    async with uow_factory() as uow:
        customer = await uow.customers.add(new_customer(merchant_id, code, **fields))
        await uow.commit()
    assert customer.id is not None
    return customer.id


async def test_merchants_are_stored_found_by_slug_and_updated(
    uow_factory: UnitOfWorkFactory,
) -> None:
    merchant_id = await add_merchant(uow_factory)
    async with uow_factory() as uow:
        by_slug = await uow.merchants.get_by_slug("shop")
        assert by_slug is not None and by_slug.id == merchant_id
        assert by_slug.settings == settings()
        changed = settings(validity_months=6, locale="en", referral_bonus=Points(1050))
        await uow.merchants.update_settings(merchant_id, changed)
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        merchant = await uow.merchants.get(merchant_id)
        assert merchant is not None and merchant.settings == changed
        assert await uow.merchants.count() == 1
        assert await uow.merchants.get_by_slug("other") is None


async def test_a_merchant_slug_is_unique(uow_factory: UnitOfWorkFactory) -> None:
    await add_merchant(uow_factory)
    async with uow_factory() as uow:
        with pytest.raises(UniqueViolation) as caught:
            await uow.merchants.add(Merchant(slug="shop", settings=settings()), at=T0)
    assert caught.value.field == "slug"


async def test_staff_emails_are_unique_whatever_their_case(uow_factory: UnitOfWorkFactory) -> None:
    merchant_id = await add_merchant(uow_factory)
    async with uow_factory() as uow:
        await uow.staff.add(merchant_id, email="Admin@Shop.cz", password_hash="h", at=T0)
        await uow.commit()
    async with uow_factory() as uow:
        with pytest.raises(UniqueViolation) as caught:
            await uow.staff.add(merchant_id, email="admin@shop.CZ", password_hash="h", at=T0)
    assert caught.value.field == "email"


async def test_a_staff_user_keeps_the_language_they_chose(uow_factory: UnitOfWorkFactory) -> None:
    merchant_id = await add_merchant(uow_factory)
    async with uow_factory() as uow:
        staff_id = await uow.staff.add(merchant_id, email="a@shop.cz", password_hash="h", at=T0)
        other = await uow.staff.add(merchant_id, email="b@shop.cz", password_hash="h", at=T0)
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        fresh = await uow.staff.get(staff_id)
    assert fresh is not None and fresh.ui_language is None  # not chosen: the merchant's
    async with uow_factory() as uow:
        assert await uow.staff.set_ui_language(staff_id, "en")
        assert not await uow.staff.set_ui_language(StaffId(other + 1000), "en")
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        chosen = await uow.staff.find_by_email("A@shop.cz")
        untouched = await uow.staff.get(other)
    assert chosen is not None and chosen.ui_language == "en"
    assert untouched is not None and untouched.ui_language is None


async def test_customers_are_found_by_email_case_insensitively_shop_id_and_code(
    uow_factory: UnitOfWorkFactory,
) -> None:
    merchant_id = await add_merchant(uow_factory)
    customer_id = await add_customer(
        uow_factory,
        merchant_id,
        "ABCDEFGH",
        email="Ann@Example.cz",
        shop_customer_id="77",
        first_name="Ann",
        pin="012345",
    )
    async with uow_factory(read_only=True) as uow:
        for found in (
            await uow.customers.find_by_email(merchant_id, "ann@example.CZ"),
            await uow.customers.find_by_shop_customer_id(merchant_id, "77"),
            await uow.customers.find_by_referral_code(merchant_id, "ABCDEFGH"),
            await uow.customers.get(merchant_id, customer_id),
        ):
            assert found is not None
            assert (found.id, found.email, found.first_name, found.pin) == (
                customer_id,
                "Ann@Example.cz",
                "Ann",
                "012345",
            )
            assert found.created_at == T0


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"email": "ANN@example.cz"}, "email"),
        ({"shop_customer_id": "77"}, "shop_customer_id"),
    ],
)
async def test_customer_identities_are_unique_per_merchant(
    uow_factory: UnitOfWorkFactory, fields: dict[str, str], expected: str
) -> None:
    merchant_id = await add_merchant(uow_factory)
    other_id = await add_merchant(uow_factory, "other")
    await add_customer(
        uow_factory, merchant_id, "AAAAAAAA", email="ann@example.cz", shop_customer_id="77"
    )
    async with uow_factory() as uow:
        with pytest.raises(UniqueViolation) as caught:
            await uow.customers.add(new_customer(merchant_id, "BBBBBBBB", **fields))
    assert caught.value.field == expected
    # the same values are free for another merchant
    await add_customer(uow_factory, other_id, "AAAAAAAA", **fields)


async def test_a_referral_code_is_unique_per_merchant(uow_factory: UnitOfWorkFactory) -> None:
    merchant_id = await add_merchant(uow_factory)
    await add_customer(uow_factory, merchant_id, "AAAAAAAA")
    async with uow_factory() as uow:
        with pytest.raises(UniqueViolation) as caught:
            await uow.customers.add(new_customer(merchant_id, "AAAAAAAA"))
    assert caught.value.field == "referral_code"


async def test_another_merchants_customer_is_never_returned(uow_factory: UnitOfWorkFactory) -> None:
    merchant_id = await add_merchant(uow_factory)
    other_id = await add_merchant(uow_factory, "other")
    customer_id = await add_customer(
        uow_factory, merchant_id, "AAAAAAAA", email="ann@x.cz", shop_customer_id="1"
    )
    async with uow_factory(read_only=True) as uow:
        assert await uow.customers.get(other_id, customer_id) is None
        assert await uow.customers.get(other_id, customer_id, for_update=False) is None
        assert await uow.customers.find_by_email(other_id, "ann@x.cz") is None
        assert await uow.customers.find_by_shop_customer_id(other_id, "1") is None
        assert await uow.customers.find_by_referral_code(other_id, "AAAAAAAA") is None
        assert await uow.ledgers.loyalty(other_id, [customer_id], today=T0.date()) == []
        assert (
            await uow.views.loyalty_page(
                other_id, after_id=CustomerId(0), limit=10, today=T0.date()
            )
            == []
        )
        assert await uow.ledgers.entries(other_id, customer_id, limit=10) == []


async def test_updates_write_back_identity_fields(uow_factory: UnitOfWorkFactory) -> None:
    merchant_id = await add_merchant(uow_factory)
    customer_id = await add_customer(uow_factory, merchant_id, "AAAAAAAA", pin="111111")
    later = T0 + timedelta(days=1)
    async with uow_factory() as uow:
        customer = await uow.customers.get(merchant_id, customer_id, for_update=True)
        assert customer is not None
        customer.email, customer.last_name = "new@x.cz", "Nová"
        customer.register(at=later)
        await uow.customers.update(customer)
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        stored = await uow.customers.find_by_email(merchant_id, "NEW@x.cz")
    assert stored is not None
    assert (stored.last_name, stored.registered, stored.pin, stored.updated_at) == (
        "Nová",
        True,
        None,
        later,
    )


async def test_a_consent_change_is_stored_with_its_history_newest_first_per_merchant(
    uow_factory: UnitOfWorkFactory,
) -> None:
    merchant_id = await add_merchant(uow_factory)
    other_id = await add_merchant(uow_factory, "other")
    customer_id = await add_customer(uow_factory, merchant_id, "AAAAAAAA", email="a@x.cz")
    later = T0 + timedelta(days=1)
    changes = []
    for consent, source, at in [
        (MarketingConsent.GRANTED, ConsentSource.API, T0),
        (MarketingConsent.REFUSED, ConsentSource.STAFF, later),
    ]:
        async with uow_factory() as uow:
            customer = await uow.customers.get(merchant_id, customer_id, for_update=True)
            assert customer is not None
            change = customer.set_consent(consent, source, at=at)
            assert change is not None
            await uow.customers.update(customer)
            await uow.customers.record_consent_change(change)
            await uow.commit()
        changes.append(change)
    async with uow_factory(read_only=True) as uow:
        stored = await uow.customers.get(merchant_id, customer_id)
        assert stored is not None
        assert (stored.marketing_consent, stored.consent_source, stored.consent_changed_at) == (
            MarketingConsent.REFUSED,
            ConsentSource.STAFF,
            later,
        )
        assert await uow.customers.consent_history(merchant_id, customer_id) == changes[::-1]
        assert await uow.customers.consent_history(merchant_id, customer_id, limit=1) == [
            changes[1]
        ]
        assert await uow.customers.consent_history(other_id, customer_id) == []


async def test_leaving_without_commit_stores_nothing(uow_factory: UnitOfWorkFactory) -> None:
    merchant_id = await add_merchant(uow_factory)
    async with uow_factory() as uow:
        await uow.customers.add(new_customer(merchant_id, "AAAAAAAA", email="gone@x.cz"))
    async with uow_factory(read_only=True) as uow:
        assert await uow.customers.find_by_email(merchant_id, "gone@x.cz") is None


async def _ledger_session(
    uow_factory: UnitOfWorkFactory, merchant_id: MerchantId, customer_id: CustomerId, change: object
) -> Ledger:
    policy = settings().expiry_policy
    async with uow_factory() as uow:
        await uow.customers.get(merchant_id, customer_id, for_update=True)
        ledger = await uow.ledgers.get(merchant_id, customer_id, policy)
        change(ledger)  # type: ignore[operator]
        await uow.ledgers.save(merchant_id, ledger, at=T0)
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        return await uow.ledgers.get(merchant_id, customer_id, policy)


async def test_a_saved_ledger_reloads_with_its_open_lots_and_summary(
    uow_factory: UnitOfWorkFactory,
) -> None:
    merchant_id = await add_merchant(uow_factory)
    customer_id = await add_customer(uow_factory, merchant_id, "AAAAAAAA")
    reference = Ledger(customer_id=customer_id, policy=settings().expiry_policy)

    def change(ledger: Ledger) -> None:
        for target in (ledger, reference):
            target.earn(Points(10000), at=T0, order_ref="o-1")
            target.earn(Points(5050), at=T0 + timedelta(days=1), order_ref="o-2")
            target.spend(Points(12000), at=T0 + timedelta(days=2), note="redeemed")

    reloaded = await _ledger_session(uow_factory, merchant_id, customer_id, change)
    assert [lot.remaining for lot in reloaded.lots] == [Points(3050)]
    assert reloaded.summary() == reference.summary()
    async with uow_factory(read_only=True) as uow:
        (loyalty,) = await uow.ledgers.loyalty(merchant_id, [customer_id], today=T0.date())
        entries = await uow.ledgers.entries(merchant_id, customer_id, limit=2)
        older = await uow.ledgers.entries(
            merchant_id, customer_id, limit=5, before_id=entries[-1].id
        )
        used = await uow.ledgers.find_order(merchant_id, EntryKind.EARN, "o-2")
        has_earned = await uow.ledgers.has_entry(merchant_id, customer_id, EntryKind.EARN)
        has_bonus = await uow.ledgers.has_entry(merchant_id, customer_id, EntryKind.REFERRAL_BONUS)
    assert loyalty.summary == reference.summary()
    assert (has_earned, has_bonus) == (True, False)
    assert [e.entry for e in entries] == reference.new_entries[::-1][:2]
    assert [e.entry for e in older] == reference.new_entries[:1]
    assert used is not None and used.customer_id == customer_id
    assert used.entry == reference.new_entries[1]


async def test_an_order_reference_is_recorded_once_per_merchant_and_kind(
    uow_factory: UnitOfWorkFactory,
) -> None:
    merchant_id = await add_merchant(uow_factory)
    first = await add_customer(uow_factory, merchant_id, "AAAAAAAA")
    second = await add_customer(uow_factory, merchant_id, "BBBBBBBB")
    await _ledger_session(
        uow_factory,
        merchant_id,
        first,
        lambda ledger: ledger.earn(Points(100), at=T0, order_ref="o-1"),
    )
    with pytest.raises(UniqueViolation) as caught:
        await _ledger_session(
            uow_factory,
            merchant_id,
            second,
            lambda ledger: ledger.earn(Points(100), at=T0, order_ref="o-1"),
        )
    assert caught.value.field == "order_ref"
    # the same reference may name a spend
    await _ledger_session(
        uow_factory,
        merchant_id,
        first,
        lambda ledger: ledger.spend(Points(50), at=T0, order_ref="o-1"),
    )


def unread_cents_zero(row: LoyaltyRow) -> LoyaltyRow:
    """The row as a tuple, with 0 for the cents that go with a missing date (never read)."""
    *head, next_on, next_cents, last_on, last_cents = row
    return (
        *head,
        next_on,
        0 if next_on is None else next_cents,
        last_on,
        0 if last_on is None else last_cents,
    )  # type: ignore[return-value]


async def test_loyalty_pages_follow_customer_ids(uow_factory: UnitOfWorkFactory) -> None:
    merchant_id = await add_merchant(uow_factory)
    ids = [await add_customer(uow_factory, merchant_id, f"AAAAAAA{n}") for n in range(2, 7)]
    async with uow_factory(read_only=True) as uow:
        day = T0.date()
        first = await uow.views.loyalty_page(
            merchant_id, after_id=CustomerId(0), limit=3, today=day
        )
        rest = await uow.views.loyalty_page(
            merchant_id, after_id=first[-1].customer_id, limit=3, today=day
        )
        chosen = await uow.ledgers.loyalty(
            merchant_id, [ids[3], ids[0], CustomerId(10**9)], today=day
        )
    assert [row.customer_id for row in first + rest] == ids
    async with uow_factory(read_only=True) as uow:
        flat = await uow.views.loyalty_rows_page(
            merchant_id, after_id=first[0].customer_id, limit=3, today=day
        )
    assert [unread_cents_zero(row) for row in flat] == [
        loyalty_row(row) for row in (first + rest)[1:4]
    ]
    assert [row.customer_id for row in chosen] == [ids[0], ids[3]]
    assert first[0].summary.balance == Points(0) and first[0].summary.next_expiration is None


async def test_expire_due_empties_past_lots_like_the_ledger_does(
    uow_factory: UnitOfWorkFactory,
) -> None:
    """The set-based expiry leaves the same lots, entries and summaries as ``Ledger.expire``."""
    merchant_id = await add_merchant(uow_factory)
    other_id = await add_merchant(uow_factory, "other")
    policy = settings().expiry_policy  # 12 months, Europe/Prague
    plans = {
        # every change before the first expiry instant, so that two lots are due at once
        "expires twice": [
            (T0 - timedelta(days=400), 1000),
            (T0 - timedelta(days=390), 2000),
            (T0 - timedelta(days=300), 500),
        ],
        "nothing due": [(T0, 700)],
        "all due": [(T0 - timedelta(days=500), 1234)],
    }
    customers: dict[str, CustomerId] = {}
    references: dict[str, Ledger] = {}
    for n, (name, lots) in enumerate(plans.items()):
        customer_id = await add_customer(uow_factory, merchant_id, f"CCCCCCC{n + 2}")
        customers[name] = customer_id
        references[name] = Ledger(customer_id=customer_id, policy=policy)

        def change(
            ledger: Ledger, lots: list[tuple[datetime, int]] = lots, name: str = name
        ) -> None:
            for target in (ledger, references[name]):
                for at, cents in lots:
                    target.earn(Points(cents), at=at)
                target.spend(Points(300), at=lots[0][0])  # while every lot is still valid

        await _ledger_session(uow_factory, merchant_id, customer_id, change)
    foreign = await add_customer(uow_factory, other_id, "DDDDDDDD")
    await _ledger_session(
        uow_factory,
        other_id,
        foreign,
        lambda ledger: ledger.earn(Points(900), at=T0 - timedelta(days=800)),
    )

    now = T0 + timedelta(days=1)
    today = date(2025, 2, 1)
    async with uow_factory() as uow:
        count = await uow.ledgers.expire_due(merchant_id, at=now, today=today)
        await uow.commit()
    assert count == 2
    for name, customer_id in customers.items():
        expected_entry = references[name].expire(at=now)
        async with uow_factory(read_only=True) as uow:
            reloaded = await uow.ledgers.get(merchant_id, customer_id, policy)
            (loyalty,) = await uow.ledgers.loyalty(merchant_id, [customer_id], today=today)
            (newest,) = await uow.ledgers.entries(merchant_id, customer_id, limit=1)
        assert loyalty.summary == references[name].summary(), name
        assert reloaded.balance() == references[name].balance(), name
        if expected_entry is None:
            assert newest.entry.kind is EntryKind.SPEND
        else:
            assert newest.entry == Entry(
                kind=EntryKind.EXPIRE,
                points=expected_entry.points,
                at=now,
                balance_after=expected_entry.balance_after,
            )
    async with uow_factory(read_only=True) as uow:
        untouched = await uow.ledgers.get(other_id, foreign, policy)
    assert [lot.remaining for lot in untouched.lots] == [Points(900)]  # not this run's to expire
    # running it again changes nothing
    async with uow_factory() as uow:
        assert (
            await uow.ledgers.expire_due(merchant_id, at=now + timedelta(seconds=1), today=today)
            == 0
        )
        await uow.commit()


async def test_api_tokens_are_found_by_digest_until_revoked_and_scoped_by_merchant(
    uow_factory: UnitOfWorkFactory,
) -> None:
    merchant_id = await add_merchant(uow_factory)
    other_id = await add_merchant(uow_factory, "other")
    async with uow_factory() as uow:
        first = await uow.api_tokens.add(
            merchant_id, name="eshop", token_digest="d1", hint="abcd", at=T0
        )
        second = await uow.api_tokens.add(
            merchant_id, name="backup", token_digest="d2", hint="wxyz", at=T0
        )
        await uow.commit()
    later = T0 + timedelta(hours=1)
    async with uow_factory() as uow:
        found = await uow.api_tokens.find_active("d1")
        assert found == first and found.name == "eshop" and found.hint == "abcd"
        assert await uow.api_tokens.revoke(other_id, first.id, at=later) is False
        assert await uow.api_tokens.revoke(merchant_id, first.id, at=later) is True
        assert await uow.api_tokens.revoke(merchant_id, first.id, at=later) is False
        assert await uow.api_tokens.touch(second.id, at=later, unless_used_after=T0) is True
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        assert await uow.api_tokens.find_active("d1") is None
        assert await uow.api_tokens.find_active("nope") is None
        listed = await uow.api_tokens.list(merchant_id)
        assert await uow.api_tokens.list(other_id) == []
    assert [t.id for t in listed] == [second.id, first.id]
    assert listed[0].last_used_at == later and listed[1].revoked_at == later


async def test_a_tokens_use_is_recorded_only_over_an_older_one(
    uow_factory: UnitOfWorkFactory,
) -> None:
    """The conditional write lets one of several concurrent requests record the use."""
    merchant_id = await add_merchant(uow_factory)
    async with uow_factory() as uow:
        token = await uow.api_tokens.add(
            merchant_id, name="eshop", token_digest="d1", hint="abcd", at=T0
        )
        await uow.commit()
    minute = timedelta(minutes=1)
    first, soon, later = T0 + minute, T0 + minute + timedelta(seconds=59), T0 + 2 * minute
    async with uow_factory() as uow:
        # never used: recorded whatever the bound
        assert await uow.api_tokens.touch(token.id, at=first, unless_used_after=T0) is True
        await uow.commit()
    async with uow_factory() as uow:
        # a use recorded after the bound (a concurrent request's) stays
        assert (
            await uow.api_tokens.touch(token.id, at=soon, unless_used_after=soon - minute) is False
        )
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        assert (await uow.api_tokens.list(merchant_id))[0].last_used_at == first
    async with uow_factory() as uow:
        # a use recorded at the bound, or before, is replaced
        assert await uow.api_tokens.touch(token.id, at=later, unless_used_after=first) is True
        assert await uow.api_tokens.touch(token.id, at=later, unless_used_after=first) is False
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        found = await uow.api_tokens.find_active("d1")
    assert found is not None and found.last_used_at == later


async def test_smtp_settings_and_the_encrypted_password_are_kept_apart(
    uow_factory: UnitOfWorkFactory,
) -> None:
    merchant_id = await add_merchant(uow_factory)
    smtp = SmtpSettings(
        host="smtp.example.cz", port=465, username="u", sender="shop@example.cz", security="tls"
    )
    async with uow_factory() as uow:
        await uow.merchants.update_smtp(merchant_id, smtp)
        await uow.merchants.set_smtp_password(merchant_id, "ciphertext")
        await uow.merchants.update_settings(merchant_id, settings(send_system_emails=True))
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        merchant = await uow.merchants.get(merchant_id)
        assert await uow.merchants.smtp_password(merchant_id) == "ciphertext"
    assert merchant is not None and merchant.smtp == smtp and merchant.settings.send_system_emails
    async with uow_factory() as uow:
        await uow.merchants.set_smtp_password(merchant_id, None)
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        assert await uow.merchants.smtp_password(merchant_id) is None


async def test_summaries_are_read_as_of_a_day_leaving_out_lots_past_their_last_valid_day(
    uow_factory: UnitOfWorkFactory,
) -> None:
    """Between a lot's expiry and the nightly run the stored summary still counts the lot;
    every read as of a later day leaves it out (loyalty, pages and the search alike)."""
    merchant_id = await add_merchant(uow_factory)
    policy = settings().expiry_policy
    both = await add_customer(uow_factory, merchant_id, "AAAAAAA2", email="both@x.cz")
    gone = await add_customer(uow_factory, merchant_id, "AAAAAAA3", email="gone@x.cz")
    kept = await add_customer(uow_factory, merchant_id, "AAAAAAA4", email="kept@x.cz")
    earned = {  # last valid days: 31 Jan 2026 (T0) and 1/2 Feb 2026
        both: [(T0, "10.50"), (T0 + timedelta(days=1), "20"), (T0 + timedelta(days=2), "5.25")],
        gone: [(T0, "7")],
        kept: [(T0 + timedelta(days=1), "3")],
    }
    for customer_id, lots in earned.items():
        async with uow_factory() as uow:
            ledger = await uow.ledgers.get(merchant_id, customer_id, policy)
            for at, amount in lots:
                ledger.earn(Points.parse(amount), at=at)
            await uow.ledgers.save(merchant_id, ledger, at=T0)
            await uow.commit()

    async def read(day: date) -> dict[int, tuple[str, Expiration | None]]:
        async with uow_factory(read_only=True) as uow:
            chosen = await uow.ledgers.loyalty(merchant_id, [both, gone, kept], today=day)
            paged = await uow.views.loyalty_page(
                merchant_id, after_id=CustomerId(0), limit=10, today=day
            )
            found = await uow.views.search_customers(
                merchant_id, parse_customer_query(""), after_id=None, limit=10, today=day
            )
            flat = await uow.views.loyalty_rows_page(
                merchant_id, after_id=CustomerId(0), limit=10, today=day
            )
        assert chosen == paged == sorted(found, key=lambda row: row.customer_id)
        assert [unread_cents_zero(row) for row in flat] == [loyalty_row(row) for row in paged]
        return {
            row.customer_id: (row.summary.balance.decimal_string(), row.summary.next_expiration)
            for row in chosen
        }

    feb1, feb2 = date(2026, 2, 1), date(2026, 2, 2)
    assert await read(date(2026, 1, 31)) == {  # the last valid day of the first lots
        both: ("35.75", Expiration(date(2026, 1, 31), Points.parse("10.50"))),
        gone: ("7.00", Expiration(date(2026, 1, 31), Points.parse("7"))),
        kept: ("3.00", Expiration(feb1, Points.parse("3"))),
    }
    assert await read(feb1) == {
        both: ("25.25", Expiration(feb1, Points.parse("20"))),
        gone: ("0.00", None),
        kept: ("3.00", Expiration(feb1, Points.parse("3"))),
    }
    assert await read(feb2) == {
        both: ("5.25", Expiration(feb2, Points.parse("5.25"))),
        gone: ("0.00", None),
        kept: ("0.00", None),
    }
    assert await read(date(2026, 2, 3)) == {
        both: ("0.00", None),
        gone: ("0.00", None),
        kept: ("0.00", None),
    }
    # Reading wrote nothing: the nightly run still finds every due lot.
    async with uow_factory() as uow:
        count = await uow.ledgers.expire_due(
            merchant_id, at=T0 + timedelta(days=3), today=date(2026, 2, 3)
        )
        await uow.commit()
    assert count == 3
