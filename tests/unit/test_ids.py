"""Merchant, customer and staff ids are distinct types: a use case called with a customer's id
where a merchant's belongs (and the other way round) does not type-check.

The snippet below is checked by mypy with the project's own configuration, as ``make lint``
checks the code that calls the use cases. Mypy runs in a process of its own: it changes the
interpreter's recursion limit and garbage collection, which other tests must not inherit."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SNIPPET = textwrap.dedent(
    """\
    from ellity.domain.model.ids import CustomerId, MerchantId
    from ellity.domain.model.money import Points
    from ellity.domain.services.points import earn_points
    from ellity.ports.clock import Clock
    from ellity.ports.storage import UnitOfWork


    async def swapped(
        merchant_id: MerchantId, customer_id: CustomerId, uow: UnitOfWork, clock: Clock
    ) -> None:
        await earn_points(customer_id, merchant_id, Points(1), order_ref="o", uow=uow, clock=clock)


    async def in_order(
        merchant_id: MerchantId, customer_id: CustomerId, uow: UnitOfWork, clock: Clock
    ) -> None:
        await earn_points(merchant_id, customer_id, Points(1), order_ref="o", uow=uow, clock=clock)
    """
)

_ERROR = re.compile(r"^[^:\n]+:(?P<line>\d+): error: (?P<message>.+?)  \[(?P<code>[a-z-]+)\]$")


def _line_of(text: str) -> int:
    return next(n for n, line in enumerate(SNIPPET.splitlines(), 1) if text in line)


def test_swapping_a_merchant_id_and_a_customer_id_in_a_use_case_call_is_a_type_error(
    tmp_path: Path,
) -> None:
    snippet = tmp_path / "swapped_ids.py"
    snippet.write_text(SNIPPET)

    mypy = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            str(snippet),
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(tmp_path / "mypy_cache"),
        ],
        env={**os.environ, "MYPYPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    report = mypy.stdout
    assert mypy.stderr == ""
    found = [m.groupdict() for m in map(_ERROR.match, report.splitlines()) if m is not None]
    swapped = _line_of("earn_points(customer_id, merchant_id")
    assert [(int(e["line"]), e["code"]) for e in found] == [
        (swapped, "arg-type"),
        (swapped, "arg-type"),
    ], report
    assert [e["message"] for e in found] == [
        'Argument 1 to "earn_points" has incompatible type "CustomerId"; expected "MerchantId"',
        'Argument 2 to "earn_points" has incompatible type "MerchantId"; expected "CustomerId"',
    ]
    assert mypy.returncode == 1
