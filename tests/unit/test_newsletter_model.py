"""The newsletter reward's rules: reading Ecomail's webhook body, the webhook token, Ellity's
own echo, and one reward at a time however the customer subscribes and unsubscribes."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ellity.domain.model.expiry import ExpiryPolicy
from ellity.domain.model.ids import CustomerId
from ellity.domain.model.ledger import EntryKind, Ledger
from ellity.domain.model.money import Points
from ellity.domain.model.newsletter import (
    DOI_LONGEST_WAIT,
    DOI_PATIENCE,
    ECHO_SKEW,
    TOKEN_LENGTH,
    AddAttempt,
    EchoKind,
    MalformedNotification,
    Notification,
    NotificationRecord,
    NotificationState,
    Outcome,
    RewardHold,
    SubscriptionChange,
    UnreadableNotification,
    decode_notification,
    double_optin_wait,
    echo_of,
    generate_webhook_token,
    looks_like_token,
    own_subscription_reason,
    parse_notification,
    reward_subscription,
    take_back_reward,
    webhook_digest,
    webhook_url,
)
from ellity.domain.model.reason import Reason

P = Points.parse
NOW = datetime(2024, 3, 10, 9, 0, tzinfo=UTC)
REWARD = P("50")
SUB, UNSUB = SubscriptionChange.SUBSCRIBED, SubscriptionChange.UNSUBSCRIBED


def body(**payload: object) -> dict[str, object]:
    base: dict[str, object] = {
        "email": "ann@example.cz",
        "status": "SUBSCRIBED",
        "listId": 7,
        "campaignId": None,
    }
    base.update(payload)
    return {"payload": {k: v for k, v in base.items() if v is not ...}}


# -- the body ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "read"),
    [
        (body(), Notification("ann@example.cz", SUB, "7", None)),
        (
            body(status="UNSUBSCRIBED", campaignId=12),
            Notification("ann@example.cz", UNSUB, "7", 12),
        ),
        (body(listId="7"), Notification("ann@example.cz", SUB, "7", None)),
        (body(campaignId="901"), Notification("ann@example.cz", SUB, "7", 901)),
        (body(campaignId=...), Notification("ann@example.cz", SUB, "7", None)),
        (body(email="  Ann@Example.CZ "), Notification("Ann@Example.CZ", SUB, "7", None)),
        ({**body(), "extra": 1}, Notification("ann@example.cz", SUB, "7", None)),
        (body(listId=2**63 - 1), Notification("ann@example.cz", SUB, str(2**63 - 1), None)),
    ],
)
def test_ecomails_body_is_read_with_ids_as_numbers_or_digit_strings(
    sent: object, read: Notification
) -> None:
    assert parse_notification(sent) == read


@pytest.mark.parametrize(
    ("sent", "says"),
    [
        ([], "JSON object"),
        ("payload", "JSON object"),
        ({}, "'payload' object"),
        ({"payload": []}, "'payload' object"),
        (body(email=...), "payload.email"),
        (body(email=""), "payload.email"),
        (body(email=42), "payload.email"),
        (body(email="not an email"), "payload.email"),
        (body(email="ann\x00@example.cz"), "payload.email"),
        (body(email="\ud800@example.cz"), "payload.email"),
        (body(email="a" * 250 + "@example.cz"), "payload.email"),
        (body(status="subscribed"), "payload.status"),
        (body(status="BOUNCED"), "payload.status"),
        (body(status=1), "payload.status"),
        (body(status=...), "payload.status"),
        (body(listId=...), "payload.listId"),
        (body(listId=None), "payload.listId"),
        (body(listId=7.0), "payload.listId"),
        (body(listId=True), "payload.listId"),
        (body(listId=0), "payload.listId"),
        (body(listId=-3), "payload.listId"),
        (body(listId=2**63), "payload.listId"),
        (body(listId="7a"), "payload.listId"),
        (body(listId="٧"), "payload.listId"),
        (body(listId=" 7"), "payload.listId"),
        (body(campaignId="x"), "payload.campaignId"),
        (body(campaignId=[1]), "payload.campaignId"),
        (body(campaignId=False), "payload.campaignId"),
    ],
)
def test_a_body_that_is_not_ecomails_notification_is_refused_saying_what_is_wrong(
    sent: object, says: str
) -> None:
    with pytest.raises(MalformedNotification) as refused:
        parse_notification(sent)
    assert says in refused.value.message


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"\xff\xfe\x00", b"[" * 5000 + b"]" * 5000, b"NaN x", b'{"a": 1}x']
)
def test_a_body_that_is_not_json_is_unreadable(raw: bytes) -> None:
    with pytest.raises(UnreadableNotification):
        decode_notification(raw)


def test_a_json_body_is_decoded_and_read() -> None:
    raw = json.dumps(body(status="UNSUBSCRIBED")).encode()
    assert decode_notification(raw) == Notification("ann@example.cz", UNSUB, "7", None)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    )
)
def test_any_json_value_is_read_or_refused_never_anything_else(value: object) -> None:
    with contextlib.suppress(MalformedNotification):
        parse_notification(value)


# -- the webhook token ---------------------------------------------------------------------


def test_a_webhook_token_has_258_random_bits_in_url_safe_characters() -> None:
    draws = iter(range(1000))
    token = generate_webhook_token(lambda n: next(draws) % n)
    assert len(token) == TOKEN_LENGTH == 43
    assert looks_like_token(token)
    assert webhook_url("https://ellity.example.cz/", token) == (
        f"https://ellity.example.cz/webhooks/ecomail/{token}"
    )
    assert len(webhook_digest(token)) == 64


@pytest.mark.parametrize("token", ["", "short", "a" * 42, "a" * 44, "a" * 42 + "!", "é" * 43])
def test_text_that_cannot_be_a_token_is_recognised_without_a_look_up(token: str) -> None:
    assert not looks_like_token(token)


# -- Ellity's echo -------------------------------------------------------------------------

SECOND = timedelta(seconds=1)


def echo(
    attempt: AddAttempt | None,
    *,
    received_at: datetime = NOW + 5 * SECOND,
    unsubscribed_since: bool = False,
    subscribed_at: datetime | None = NOW + SECOND,
) -> EchoKind:
    return echo_of(
        attempt,
        received_at=received_at,
        unsubscribed_since=unsubscribed_since,
        subscribed_at=subscribed_at,
    ).kind


def test_the_first_subscription_after_ellitys_add_attempt_is_its_echo() -> None:
    verdict = echo_of(AddAttempt(NOW), received_at=NOW, unsubscribed_since=False, subscribed_at=NOW)
    assert verdict.kind is EchoKind.ECHO
    assert verdict.reason.english().startswith(
        "Ellity's own add of this contact (attempted 2024-03-10 09:00:00 UTC): not a"
        " subscription by the customer"
    )


def test_an_attempt_whose_answer_was_lost_still_has_its_echo() -> None:
    """The add reached Ecomail but its answer did not reach Ellity: the attempt was recorded
    before the call, so the notification received an hour later is still the echo."""
    assert echo(AddAttempt(NOW), received_at=NOW + timedelta(hours=1)) is EchoKind.ECHO
    assert echo(AddAttempt(NOW), subscribed_at=None) is EchoKind.ECHO


def test_without_an_add_attempt_of_ellitys_nothing_is_an_echo() -> None:
    verdict = echo_of(None, received_at=NOW, unsubscribed_since=False, subscribed_at=NOW)
    assert verdict.kind is EchoKind.OWN and "never tried to add" in verdict.reason.english()


def test_subscribing_again_ten_seconds_after_unsubscribing_is_the_customers_own() -> None:
    attempt = AddAttempt(NOW)
    verdict = echo_of(
        attempt,
        received_at=NOW + 20 * SECOND,
        unsubscribed_since=True,  # an UNSUBSCRIBED came 10 s before
        subscribed_at=NOW + 20 * SECOND,
    )
    assert verdict.kind is EchoKind.OWN
    assert verdict.reason.english() == "Subscribed again after unsubscribing"
    taken = AddAttempt(NOW, echo_taken_at=NOW, echo_subscribed_at=NOW)
    assert echo(taken, unsubscribed_since=True, subscribed_at=NOW + 20 * SECOND) is EchoKind.OWN
    assert echo(taken, unsubscribed_since=True, subscribed_at=None) is EchoKind.OWN


def test_the_taken_echos_subscription_is_a_replay_whatever_unsubscription_was_claimed() -> None:
    """Ecomail says the subscription is the one Ellity's add made: an unsubscription notified
    since (not confirmed, or forged) did not end it."""
    taken = AddAttempt(NOW, echo_taken_at=NOW, echo_subscribed_at=NOW)
    assert echo(taken, unsubscribed_since=True, subscribed_at=NOW) is EchoKind.REPLAY


def test_the_echo_already_taken_notified_again_is_a_replay() -> None:
    taken = AddAttempt(NOW, echo_taken_at=NOW + SECOND, echo_subscribed_at=NOW)
    verdict = echo_of(
        taken, received_at=NOW + 9 * SECOND, unsubscribed_since=False, subscribed_at=NOW
    )
    assert verdict.kind is EchoKind.REPLAY and "recorded already" in verdict.reason.english()
    # either subscription time missing counts as the same subscription
    assert echo(taken, subscribed_at=None) is EchoKind.REPLAY
    assert echo(AddAttempt(NOW, NOW, None), subscribed_at=NOW + SECOND) is EchoKind.REPLAY


def test_a_new_subscription_after_the_echo_was_taken_is_the_customers_own() -> None:
    """Ecomail's subscription time changed: the person subscribed again (the unsubscription
    between was not notified)."""
    taken = AddAttempt(NOW, echo_taken_at=NOW, echo_subscribed_at=NOW)
    verdict = echo_of(
        taken,
        received_at=NOW + timedelta(days=3),
        unsubscribed_since=False,
        subscribed_at=NOW + timedelta(days=3),
    )
    assert verdict.kind is EchoKind.OWN and "2024-03-13 09:00:00 UTC" in verdict.reason.english()


def test_a_notification_received_before_the_attempt_is_not_its_echo() -> None:
    verdict = echo_of(
        AddAttempt(NOW), received_at=NOW - SECOND, unsubscribed_since=False, subscribed_at=NOW
    )
    assert verdict.kind is EchoKind.OWN and "before Ellity's add" in verdict.reason.english()


@pytest.mark.parametrize(
    ("subscribed_at", "kind"),
    [
        (NOW - ECHO_SKEW, EchoKind.ECHO),  # Ecomail's clock a little behind
        (NOW - ECHO_SKEW - SECOND, EchoKind.OWN),  # subscribed before Ellity's add
        (NOW - timedelta(days=40), EchoKind.OWN),
        (NOW + timedelta(minutes=30), EchoKind.ECHO),  # Ecomail processed the add later
    ],
)
def test_ecomails_subscription_time_well_before_the_attempt_is_not_an_echo(
    subscribed_at: datetime, kind: EchoKind
) -> None:
    assert (
        echo(AddAttempt(NOW), received_at=NOW + timedelta(hours=1), subscribed_at=subscribed_at)
        is kind
    )


def test_the_customers_own_subscription_reason_says_why_and_what_it_did() -> None:
    own = echo_of(None, received_at=NOW, unsubscribed_since=True, subscribed_at=NOW)
    paid = Reason("Paid %(points)s points.", points=Points(5000))
    assert own_subscription_reason(own, paid).english() == (
        "The customer's own subscription (Ellity never tried to add this contact): paid 50 points."
    )


# -- one reward at a time ------------------------------------------------------------------


def ledger() -> Ledger:
    return Ledger(customer_id=CustomerId(1), policy=ExpiryPolicy(12, "Europe/Prague"))


def subscribe(hold: RewardHold, book: Ledger, *, at: datetime = NOW, **kw: object):  # type: ignore[no-untyped-def]
    options: dict[str, object] = {"reward": REWARD, "at": at}
    options.update(kw)
    return reward_subscription(hold, book, **options)  # type: ignore[arg-type]


def test_a_confirmed_subscription_pays_the_reward_and_holds_it() -> None:
    hold, book = RewardHold(), ledger()
    verdict = subscribe(hold, book)
    assert verdict.outcome is Outcome.PAID and verdict.points == REWARD
    assert verdict.entry is not None and verdict.entry.kind is EntryKind.NEWSLETTER_REWARD
    assert book.balance() == REWARD
    assert hold.held and hold.outstanding == REWARD and hold.paid_at == NOW


def test_a_held_reward_is_not_paid_again() -> None:
    hold, book = RewardHold(), ledger()
    subscribe(hold, book)
    again = subscribe(hold, book)
    assert again.outcome is Outcome.IGNORED and "already holds" in again.reason.english()
    assert book.balance() == REWARD


def test_no_reward_is_paid_while_it_is_set_to_zero() -> None:
    hold, book = RewardHold(), ledger()
    verdict = subscribe(hold, book, reward=Points(0))
    assert verdict.outcome is Outcome.IGNORED and not book.balance() and not hold.held


def test_an_unsubscription_takes_the_whole_reward_back_and_releases_it() -> None:
    hold, book = RewardHold(), ledger()
    subscribe(hold, book)
    book.earn(P("100"), at=NOW)
    verdict = take_back_reward(hold, book, take_back=True, at=NOW)
    assert verdict.outcome is Outcome.DEDUCTED and verdict.points == -REWARD
    assert verdict.entry is not None and verdict.entry.kind is EntryKind.NEWSLETTER_DEDUCTION
    assert book.balance() == P("100") and not hold.held and hold.released_at == NOW


def test_a_deduction_never_takes_the_balance_below_zero_and_the_rest_stays_held() -> None:
    hold, book = RewardHold(), ledger()
    subscribe(hold, book)
    book.spend(P("30"), at=NOW)
    verdict = take_back_reward(hold, book, take_back=True, at=NOW)
    assert verdict.outcome is Outcome.DEDUCTED and verdict.points == P("-20")
    assert book.balance() == Points(0) and hold.outstanding == P("30") and hold.held
    assert subscribe(hold, book).outcome is Outcome.IGNORED  # still held: nothing paid
    book.earn(P("100"), at=NOW)
    rest = take_back_reward(hold, book, take_back=True, at=NOW)
    assert rest.points == P("-30") and not hold.held and book.balance() == P("70")


def test_with_nothing_left_to_take_the_reward_stays_held() -> None:
    hold, book = RewardHold(), ledger()
    subscribe(hold, book)
    book.spend(REWARD, at=NOW)
    verdict = take_back_reward(hold, book, take_back=True, at=NOW)
    assert verdict.outcome is Outcome.IGNORED and verdict.entry is None
    assert hold.outstanding == REWARD
    assert EntryKind.NEWSLETTER_DEDUCTION not in [e.kind for e in book.new_entries]


@pytest.mark.parametrize(("take_back", "paid"), [(False, True), (True, False)])
def test_an_unsubscription_deducts_only_a_held_reward_with_taking_back_on(
    take_back: bool, paid: bool
) -> None:
    hold, book = RewardHold(), ledger()
    if paid:
        subscribe(hold, book)
    before = book.balance()
    verdict = take_back_reward(hold, book, take_back=take_back, at=NOW)
    assert verdict.outcome is Outcome.IGNORED and book.balance() == before


@given(
    st.lists(
        st.tuples(st.sampled_from(["sub", "unsub", "spend", "earn"]), st.integers(1, 80)),
        max_size=40,
    ),
    st.booleans(),
)
def test_no_sequence_of_subscriptions_unsubscriptions_and_spending_farms_points(
    steps: list[tuple[str, int]], take_back: bool
) -> None:
    """Newsletter entries net at most one reward, and the balance never goes below zero."""
    hold, book = RewardHold(), ledger()
    for n, (step, amount) in enumerate(steps):
        at = NOW + timedelta(hours=n)
        if step == "sub":
            subscribe(hold, book, at=at)
        elif step == "unsub":
            take_back_reward(hold, book, take_back=take_back, at=at)
        elif step == "earn":
            book.earn(Points(amount * 100), at=at)
        elif book.balance().is_positive():
            book.spend(min(Points(amount * 100), book.balance()), at=at)
        newsletter = sum(
            e.points.hundredths
            for e in book.new_entries
            if e.kind in (EntryKind.NEWSLETTER_REWARD, EntryKind.NEWSLETTER_DEDUCTION)
        )
        assert 0 <= newsletter <= REWARD.hundredths
        assert newsletter == hold.outstanding.hundredths
        assert book.balance().hundredths >= 0


def test_five_cycles_leave_at_most_one_reward() -> None:
    hold, book = RewardHold(), ledger()
    book.earn(P("100"), at=NOW)  # a purchase
    for cycle in range(5):
        at = NOW + timedelta(days=cycle)
        subscribe(hold, book, at=at)
        book.spend(P("10"), at=at)  # some points redeemed meanwhile
        take_back_reward(hold, book, take_back=True, at=at)
    kinds = [e.kind for e in book.new_entries]
    assert kinds.count(EntryKind.NEWSLETTER_REWARD) == kinds.count(EntryKind.NEWSLETTER_DEDUCTION)
    assert book.balance() == P("50") and not hold.held  # 100 earned, 50 spent: nothing farmed


# -- the activity log ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "outcome", "points", "result"),
    [
        (NotificationState.PENDING, None, None, "waiting"),
        (NotificationState.PROCESSED, Outcome.PAID, P("50"), "paid 50"),
        (NotificationState.PROCESSED, Outcome.DEDUCTED, P("-20.5"), "deducted 20.50"),
        (NotificationState.PROCESSED, Outcome.IGNORED, None, "ignored"),
        (NotificationState.PROCESSED, Outcome.UNCONFIRMED, None, "unconfirmed"),
    ],
)
def test_each_notification_says_what_it_did(
    state: NotificationState, outcome: Outcome | None, points: Points | None, result: str
) -> None:
    record = NotificationRecord(
        id=1,
        received_at=NOW,
        notification=Notification("ann@example.cz", SUB, "7"),
        state=state,
        outcome=outcome,
        reason=Reason.stored(""),
        points=points,
        customer_id=None,
        processed_at=None,
    )
    assert record.result == result


# -- double opt-in ---------------------------------------------------------------------------


def test_a_double_optin_sign_up_is_looked_at_ever_less_often_for_seven_days() -> None:
    received = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    assert double_optin_wait(received, received) == timedelta(minutes=5)
    assert double_optin_wait(received, received + timedelta(hours=1)) == timedelta(minutes=30)
    assert double_optin_wait(received, received + timedelta(days=2)) == DOI_LONGEST_WAIT
    last_hour = received + DOI_PATIENCE - timedelta(hours=1)
    assert double_optin_wait(received, last_hour) == timedelta(hours=1)  # ends at the limit
    assert double_optin_wait(received, received + DOI_PATIENCE) is None
    looks, now = 1, received
    while (wait := double_optin_wait(received, now)) is not None:
        now, looks = now + wait, looks + 1
    assert now == received + DOI_PATIENCE
    assert looks <= 45  # Ecomail is asked about 40 times in all, not every few seconds
