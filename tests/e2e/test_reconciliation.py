"""Reconciling the Ecomail list end to end: the emulator's list changed behind Ellity's back in
every way the reconciliation repairs, the real Ecomail client, the app's real webhook, SQLite
and PostgreSQL. The worker is driven by hand with the world's clock (``test_newsletter_webhook``).
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ellity.domain.model.consent import MarketingConsent
from ellity.domain.model.newsletter import DOI_PATIENCE
from ellity.domain.model.reconciliation import RepairKind
from ellity.domain.services import reconciliation
from ellity.domain.services.customers import CustomerInput, upsert_customer
from ellity.ports.storage.reconciliation import ReconciliationRun, Trigger
from tests.e2e.test_newsletter_webhook import (
    ANN,
    KEY,
    REWARD,
    World,
    clock,
    customer_in_the_list,
    emulator,
    p,
    world,
)
from tests.ecomail_emulator import Emulator, EmulatorServer
from tests.fakes import FakeJobQueue
from tests.processes import ELLITY, clean_env

__all__ = ["clock", "emulator", "world"]  # the newsletter tests' world

BEN = "ben@anna-customers.cz"
CID = "cid@anna-customers.cz"
DAN = "dan@anna-customers.cz"
EVE = "eve@anna-customers.cz"
FAY = "fay@anna-customers.cz"
GUS = "gus@anna-customers.cz"
ZED = "zed@someone-else.cz"


async def run(w: World, worker: str = "worker-1", **kw: Any) -> ReconciliationRun | None:
    return await reconciliation.run_reconciliation(
        w.merchant_id,
        uow_factory=w.deps.uow,
        platforms=w.deps.marketing,
        secret_box=w.deps.secret_box,
        clock=w.clock,
        worker_token=worker,
        share=0.3,
        **kw,
    )


async def request(w: World) -> None:
    await reconciliation.request_run(
        w.merchant_id,
        trigger=Trigger.MERCHANT,
        uow_factory=w.deps.uow,
        clock=w.clock,
        queue=FakeJobQueue(),
    )


async def reconciled(w: World, *, per_page: int = 2) -> ReconciliationRun:
    await request(w)
    finished = await run(w, per_page=per_page)
    assert finished is not None and finished.finished and finished.error is None, finished
    return finished


async def repairs(w: World, finished: ReconciliationRun) -> list[tuple[str, str]]:
    async with w.deps.uow(read_only=True) as uow:
        made = await uow.reconciliation.repairs(w.merchant_id, finished.id, limit=1000)
    return sorted((r.email, r.kind.value) for r in made)


async def with_consent(w: World, email: str, consent: MarketingConsent) -> None:
    await upsert_customer(
        w.merchant_id,
        CustomerInput(email=email, registered=True, marketing_consent=consent),
        uow=w.deps.uow(),
        clock=w.clock,
        rng=w.deps.rng,
    )


def member_reads(w: World) -> int:
    return sum(1 for r in w.emu.requests if r.path.endswith("/subscribers"))


async def test_one_run_repairs_exactly_what_changed_behind_ellitys_back_and_a_second_finds_nothing(
    world: World,
) -> None:
    w, members = world, world.newsletter_list
    list_id = members.id
    await customer_in_the_list(w, ANN)  # added by Ellity, unsubscribed by its link since
    for email in (BEN, FAY):
        await w.customer(email)  # added by Ellity
    await with_consent(w, GUS, MarketingConsent.GRANTED)  # added by Ellity
    await w.customer(CID)
    await w.work()
    w.later()
    members.unsubscribe_by_link(CID)
    await w.work()
    w.later()
    members.subscribe_by_form(CID)  # her own sign-up, notified: paid
    for email in (DAN, EVE):
        await with_consent(w, email, MarketingConsent.REFUSED)  # never added by Ellity
    await w.work()
    assert await w.balance(CID) == p(REWARD)
    w.later()
    members.double_optin = True
    members.subscribe_by_form(EVE)  # unconfirmed; Ecomail's only webhook for it
    await w.work()
    w.clock.advance(DOI_PATIENCE + DOI_PATIENCE)  # Ellity stopped asking: unconfirmed
    await w.work()
    assert (await w.outcomes())[-1] == (EVE, "SUBSCRIBED", "unconfirmed")
    members.double_optin = False
    w.later()
    # her unconfirmed sign-up never had Ellity's fields written (a member all the same)
    first = await reconciled(w)
    assert await repairs(w, first) == [(EVE, RepairKind.FIELDS.value)]
    await w.work()
    w.later()
    untouched = await reconciled(w)
    assert untouched.repairs.total == 0, await repairs(w, untouched)

    # behind Ellity's back
    w.emu.edit_field(list_id, ANN, "ellity_credit", "9 999")
    w.emu.delete_member(list_id, BEN)
    w.emu.unsubscribe(list_id, CID)  # another tool, through the API: no webhook
    w.emu.add_member(list_id, DAN)  # a sign-up whose notification was lost
    w.emu.confirm_double_optin(list_id, EVE)  # Ecomail notifies nothing
    w.emu.set_status(list_id, GUS, 4)  # hard bounce
    w.emu.add_member(list_id, ZED, custom_fields={"ellity_credit": "120", "ellity_credit_num": 120})
    w.later()
    ledger_before = await w.ledger()

    found = await reconciled(w)
    assert await repairs(w, found) == [
        (ANN, RepairKind.FIELDS.value),
        (BEN, RepairKind.ADDED.value),
        (CID, RepairKind.UNSUBSCRIBED.value),
        (DAN, RepairKind.SIGNUP.value),
        (EVE, RepairKind.CONFIRMED.value),
        (GUS, RepairKind.UNSUBSCRIBED.value),
        (ZED, RepairKind.CLEARED.value),
    ]
    assert found.checked == found.expected == 7  # Ben is no longer in the list
    await w.work()

    assert members.members[ANN].custom_fields["ellity_credit"] != "9 999"
    assert members.members[BEN].status == 1  # added again
    assert members.members[CID].status == 2  # Ellity never re-subscribes
    assert await w.consent(CID) == "refused" and await w.balance(CID) == p(0)
    assert await w.consent(DAN) == "granted" and await w.balance(DAN) == p(REWARD)
    assert await w.consent(EVE) == "granted" and await w.balance(EVE) == p(REWARD)
    assert await w.consent(GUS) == "refused"
    assert members.members[ZED].status == 1
    assert members.members[ZED].custom_fields.get("ellity_credit") in ("", None)
    moved = (await w.ledger())[len(ledger_before) :]
    assert sorted(moved) == sorted(
        [
            ("newsletter_deduction", -REWARD * 100),
            ("newsletter_reward", REWARD * 100),
            ("newsletter_reward", REWARD * 100),
        ]
    )
    w.later()
    again = await reconciled(w)
    assert again.repairs.total == 0, await repairs(w, again)
    assert w.emu.max_requests_per_minute(KEY) <= 1000


async def test_a_run_killed_in_the_middle_goes_on_from_its_page_and_two_workers_run_it_once(
    world: World,
) -> None:
    w = world
    for n in range(9):
        await w.customer(f"c{n}@anna-customers.cz")
    await w.work()
    await request(w)

    class Killed(Exception):
        pass

    async def killed_after_two_pages(progress: ReconciliationRun) -> None:
        if progress.checked >= 4:
            raise Killed

    reads = member_reads(w)
    with pytest.raises(Killed):
        await run(w, "worker-1", per_page=2, progress=killed_after_two_pages)
    # counting takes one read per status, then pages 1 and 2 of the subscribed members
    assert member_reads(w) - reads == 5 + 2
    async with w.deps.uow(read_only=True) as uow:
        left = await uow.reconciliation.unfinished(w.merchant_id)
    assert left is not None and left.page == 3 and left.checked == 4
    assert await run(w, "worker-2", per_page=2) is None  # the dead worker's claim still holds
    w.clock.advance(minutes=3)
    reads = member_reads(w)
    one, two = await asyncio.gather(run(w, "worker-2", per_page=2), run(w, "worker-3", per_page=2))
    finished = [r for r in (one, two) if r is not None]
    assert len(finished) == 1 and finished[0].finished
    assert finished[0].checked == 9
    # pages 3, 4 and 5 of the subscribed members once, then one page of each other status
    assert member_reads(w) - reads == 3 + 4


async def test_the_command_reconciles_and_prints_its_report(
    world: World, emulator: tuple[Emulator, EmulatorServer], tmp_path: Path
) -> None:
    w, (_, server) = world, emulator
    await w.customer(ANN)
    await w.work()
    w.emu.edit_field(w.newsletter_list.id, ANN, "ellity_credit_num", 999)
    env = {
        **clean_env(),
        "ELLITY_DATABASE_URL": w.database.engine.url.render_as_string(hide_password=False),
        "ELLITY_SECRET_KEY": "e2e-secret-key",
        "ELLITY_VAR_DIR": str(tmp_path),
        "ELLITY_ECOMAIL_API_URL": server.url,
    }
    command = [*ELLITY, "ecomail", "reconcile", "--merchant", "anna"]
    reads = member_reads(w)

    def reconcile() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
        )

    # two operators start it at once: one run, read once, both told its report (each request
    # takes a while, so the run is still going when the slower of the two starts)
    w.emu.faults.delay = 0.5
    done, other = await asyncio.gather(asyncio.to_thread(reconcile), asyncio.to_thread(reconcile))
    assert other.returncode == 0, other.stderr
    assert other.stdout == done.stdout
    assert member_reads(w) - reads == 5 + 5  # the counts, then one page of each status
    assert done.returncode == 0, done.stderr
    assert "1 members checked" in done.stdout
    assert "fields rewritten:              1" in done.stdout
    assert "members checked" in done.stderr  # the progress
    async with w.database.engine.connect() as conn:
        runs = (await conn.execute(sa.text("SELECT trigger FROM reconciliation_runs"))).all()
    assert [r.trigger for r in runs] == ["command"]
    assert KEY not in done.stdout + done.stderr
