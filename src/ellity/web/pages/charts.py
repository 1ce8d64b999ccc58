"""Bar charts drawn as inline SVG on the server: geometry here, markup in ``_chart.html``.

Points gained stand above the zero line; points spent and expired hang below it, stacked.
Every bar carries a ``<title>`` with its day and values, which browsers show on hover.
Styles come from CSS classes (the Content-Security-Policy allows no inline styles).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from ellity.domain.model.activity import DayTotals, ExpiryTotal
from ellity.domain.model.money import Locale, Points
from ellity.web.i18n import date_text, gettext_for, ngettext_for, number_text, short_day

WIDTH, HEIGHT = 900, 240
LEFT, RIGHT, TOP, BOTTOM = 70, 10, 12, 28
LABEL_EVERY = 15  # days between date labels


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str


@dataclass(frozen=True, slots=True)
class Column:
    """One day: its bars and the hover text."""

    title: str
    bars: list[Bar]
    x: float
    width: float


@dataclass(frozen=True, slots=True)
class Label:
    x: float
    y: float
    text: str
    anchor: str = "middle"


@dataclass(slots=True)
class Chart:
    title: str
    description: str
    columns: list[Column] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    zero_y: float = 0.0
    width: int = WIDTH
    height: int = HEIGHT
    plot_left: int = LEFT
    plot_right: int = WIDTH - RIGHT
    empty: bool = True


def _slots(count: int) -> tuple[float, float]:
    slot = (WIDTH - LEFT - RIGHT) / max(count, 1)
    return slot, max(slot * 0.8, 1.0)


def _date_labels(days: list[date], slot: float, locale: Locale) -> list[Label]:
    labels = [
        Label(LEFT + i * slot + slot / 2, HEIGHT - 8, short_day(day, locale))
        for i, day in enumerate(days)
        if i % LABEL_EVERY == 0 and len(days) - i > LABEL_EVERY / 3
    ]
    if days:  # the last day, right-aligned so it stays inside the picture
        labels.append(Label(WIDTH - RIGHT, HEIGHT - 8, short_day(days[-1], locale), "end"))
    return labels


def _value_labels(zero: float, marks: Sequence[tuple[float, str]]) -> list[Label]:
    """The scale's ends and the zero line; the zero label gives way when they are close."""
    labels = [Label(LEFT - 6, y, text, "end") for y, text in marks]
    if all(abs(y - (zero + 4)) >= 12 for y, _ in marks):
        labels.append(Label(LEFT - 6, zero + 4, "0", "end"))
    return labels


def history_chart(days: list[DayTotals], locale: Locale) -> Chart:
    """Issued above the line; spent and expired below it; texts in ``locale``."""
    _ = gettext_for(locale)
    up = max((d.issued.hundredths for d in days), default=0)
    down = max((d.spent.hundredths + d.expired.hundredths for d in days), default=0)
    plot = HEIGHT - TOP - BOTTOM
    total = up + down
    zero = TOP + (plot * up / total if total else plot / 2)
    scale = plot / total if total else 0.0
    slot, width = _slots(len(days))
    chart = Chart(
        title=_("Points per day"),
        description=_(
            "Points issued, spent and expired on each of the last %(days)s days; issued above"
            " the line, spent and expired below it.",
            days=number_text(len(days), locale),
        ),
        zero_y=zero,
        empty=total == 0,
    )
    for i, d in enumerate(days):
        x = LEFT + i * slot + (slot - width) / 2
        bars = []
        if d.issued:
            h = d.issued.hundredths * scale
            bars.append(Bar(x, zero - h, width, h, "issued"))
        spent_h = d.spent.hundredths * scale
        if d.spent:
            bars.append(Bar(x, zero, width, spent_h, "spent"))
        if d.expired:
            bars.append(Bar(x, zero + spent_h, width, d.expired.hundredths * scale, "expired"))
        title = _(
            "%(day)s: issued %(issued)s, spent %(spent)s, expired %(expired)s",
            day=date_text(d.day, locale),
            issued=d.issued.display(locale),
            spent=d.spent.display(locale),
            expired=d.expired.display(locale),
        )
        chart.columns.append(Column(title, bars, LEFT + i * slot, slot))
    marks = []
    if up:
        marks.append((TOP + 10, "+" + Points(up).display(locale)))
    if down:
        marks.append((TOP + plot, "-" + Points(down).display(locale)))
    chart.labels = _date_labels([d.day for d in days], slot, locale) + _value_labels(zero, marks)
    return chart


def expiry_chart(expiries: list[ExpiryTotal], locale: Locale) -> Chart:
    _, ngettext = gettext_for(locale), ngettext_for(locale)
    top = max((e.points.hundredths for e in expiries), default=0)
    plot = HEIGHT - TOP - BOTTOM
    zero = TOP + plot
    scale = plot / top if top else 0.0
    slot, width = _slots(len(expiries))
    chart = Chart(
        title=_("Points expiring per day"),
        description=_(
            "Points that expire on each of the next %(days)s days.",
            days=number_text(len(expiries), locale),
        ),
        zero_y=zero,
        empty=top == 0,
    )
    for i, e in enumerate(expiries):
        x = LEFT + i * slot + (slot - width) / 2
        h = e.points.hundredths * scale
        bars = [Bar(x, zero - h, width, h, "expiring")] if e.points else []
        title = ngettext(
            "%(day)s: %(points)s points of %(num)d customer expire",
            "%(day)s: %(points)s points of %(num)d customers expire",
            e.customers,
            day=date_text(e.on, locale),
            points=e.points.display(locale),
        )
        chart.columns.append(Column(title, bars, LEFT + i * slot, slot))
    marks = [(TOP + 10, Points(top).display(locale))] if top else []
    chart.labels = _date_labels([e.on for e in expiries], slot, locale) + _value_labels(zero, marks)
    return chart
