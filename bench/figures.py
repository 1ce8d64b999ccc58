"""The figures of a benchmark run, each with its floor and ratio, and what the run ran on.

A figure's ``ratio`` is how many times the floor's cost the application's is (1.0: as cheap as
the floor): ``value / floor`` for times and counts, ``floor / value`` for rates.
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    unit: str
    value: float
    floor: float | None = None
    floor_is: str = ""
    target: str = ""
    rate: bool = False  # higher is better (the ratio is floor / value)
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.floor is None or not self.value or not self.floor:
            return None
        return self.floor / self.value if self.rate else self.value / self.floor

    def as_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "unit": self.unit,
            "value": self.value,
            "floor": self.floor,
            "ratio": self.ratio,
            "floor_is": self.floor_is or None,
            "target": self.target or None,
            "note": self.note or None,
        }


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    digits = (
        0
        if abs(value) >= 1000 or unit in ("calls", "MB", "repairs")
        else 1
        if abs(value) >= 10
        else 2
    )
    return f"{value:,.{digits}f} {unit}"


def table(figures: list[Figure]) -> str:
    lines = [
        f"{'figure':34} {'value':>14} {'floor':>14} {'ratio':>8}  target / note",
        "-" * 100,
    ]
    for figure in figures:
        ratio = "—" if figure.ratio is None else f"{figure.ratio:.2f}x"
        tail = "; ".join(part for part in (figure.target, figure.note) if part)
        lines.append(
            f"{figure.label:34} {_number(figure.value, figure.unit):>14}"
            f" {_number(figure.floor, figure.unit):>14} {ratio:>8}  {tail}"
        )
    return "\n".join(lines)


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(  # noqa: S603
            ["git", *args],  # noqa: S607 - whichever git the PATH has
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    try:
        return {
            "commit": git("rev-parse", "--short", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        }
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def load() -> list[float]:
    """The load average over 1, 5 and 15 minutes."""
    return [round(value, 2) for value in os.getloadavg()]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
