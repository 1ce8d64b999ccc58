"""A list's members by status: O(1) counters and pages that cost about their own size."""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.ecomail_emulator.model import Member


class StatusIndex:
    """A list's members in one sequence per status, in the order they entered it; a member
    knows its position. Leaving a status leaves a hole (kept sorted), so a page is found by
    binary search without rewriting the sequence; holes are squeezed out once they make up
    half of it."""

    SQUEEZE_FROM = 1024

    def __init__(self) -> None:
        self._order: dict[int, list[Member | None]] = {}
        self._holes: dict[int, list[int]] = {}

    def add(self, member: Member) -> None:
        sequence = self._order.setdefault(member._status, [])
        member._pos = len(sequence)
        sequence.append(member)

    def remove(self, member: Member) -> None:
        sequence = self._order[member._status]
        sequence[member._pos] = None
        holes = self._holes.setdefault(member._status, [])
        bisect.insort(holes, member._pos)
        if len(holes) >= self.SQUEEZE_FROM and 2 * len(holes) > len(sequence):
            self._squeeze(member._status)

    def count(self, status: int) -> int:
        return len(self._order.get(status, ())) - len(self._holes.get(status, ()))

    def statuses(self) -> Iterator[int]:
        return iter(self._order)

    def page(self, statuses: tuple[int, ...], offset: int, limit: int) -> tuple[int, list[Member]]:
        """The total and the members at ``offset`` in these statuses' joined sequences."""
        chosen: list[Member] = []
        total = 0
        for status in statuses:
            live = self.count(status)
            start = max(offset - total, 0)
            if len(chosen) < limit and start < live:
                chosen.extend(self._slice(status, start, limit - len(chosen)))
            total += live
        return total, chosen

    def _slice(self, status: int, offset: int, limit: int) -> list[Member]:
        sequence = self._order.get(status, [])
        holes = self._holes.get(status)
        if not holes:
            return sequence[offset : offset + limit]
        # the smallest position with offset + 1 live members up to and including it
        low, high = offset, offset + len(holes)
        while low < high:
            middle = (low + high) // 2
            if middle + 1 - bisect.bisect_right(holes, middle) > offset:
                high = middle
            else:
                low = middle + 1
        chosen: list[Member] = []
        while len(chosen) < limit and low < len(sequence):
            chunk = sequence[low : low + limit - len(chosen)]
            chosen.extend(member for member in chunk if member is not None)
            low += len(chunk)
        return chosen

    def _squeeze(self, status: int) -> None:
        sequence = [member for member in self._order[status] if member is not None]
        for position, member in enumerate(sequence):
            member._pos = position
        self._order[status] = sequence
        self._holes[status] = []
