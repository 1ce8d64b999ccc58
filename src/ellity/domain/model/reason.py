"""Why something happened, kept so that each reader gets it in their own language.

A ``Reason`` is a tuple of clauses; each clause is an English template with ``%(name)s``
placeholders and the values to put in, like a ``DomainError``'s ``template`` and ``params``.
The values stay what they are until a reader is known: ``Points`` (formatted by the reader's
locale), instants (``datetime``, shown in the reader's time zone), ``Term`` (a word the pages
translate too), whole numbers, and plain strings that are shown as they are (Ecomail's own
words, ids).

Clauses compose: the next sentence (``+``), or the clause that completes the one before it
(``completed_by``: after a colon in English, its first letter lowered); how two clauses are
joined is a template the pages translate too. ``english()`` is the text stored for logs, the
CLI and the API; the pages translate each clause and put the values in for the reader. A
stored clause whose template is no longer in the catalogs is shown in English, with its
values formatted for the reader. A reason stored as English text only (``Reason.stored``,
rows from before clauses were kept) is shown as it is.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeAlias

from ellity.domain.model.errors import Term, english
from ellity.domain.model.money import Points
from ellity.domain.model.outbox import clip_error

#: What a clause may put into its template: ``int`` is a count or an id, shown as it is;
#: ``float`` a measure (seconds), formatted by the reader's locale.
Value: TypeAlias = Points | datetime | Term | str | int | float


class Joint(StrEnum):
    """How a clause follows the one before it."""

    SENTENCE = "sentence"  # the next sentence, after a space
    COMPLETION = "completion"  # completes the one before: ": " and its first letter lowered

    @property
    def template(self) -> str:
        """How the two are put together, ``%(before)s`` and ``%(next)s`` (translated too: a
        language may join them otherwise)."""
        return _JOINTS[self]


def joint(template: str) -> str:
    """Marks a joint's template for the catalogs."""
    return template


_JOINTS = {
    Joint.SENTENCE: joint("%(before)s %(next)s"),
    Joint.COMPLETION: joint("%(before)s: %(next)s"),
}


@dataclass(frozen=True, slots=True)
class Clause:
    """One part of a reason: an English ``template`` and the ``params`` put into it.
    ``translated`` is False for English text stored before reasons had clauses."""

    template: str
    params: tuple[tuple[str, Value], ...] = ()
    joint: Joint = Joint.SENTENCE
    translated: bool = True

    def values(self) -> dict[str, Value]:
        return dict(self.params)

    def put_in(self, template: str, shown: Mapping[str, str]) -> str:
        """``template`` (this clause's, or its translation) with the ``shown`` values."""
        return template % shown if self.params else template


class Reason:
    """Why: ``Reason("Paid %(points)s points.", points=reward)`` is a reason of one clause;
    ``a + b`` and ``a.completed_by(b)`` compose them."""

    __slots__ = ("parts",)

    parts: tuple[Clause, ...]

    def __init__(self, template: str, /, **params: Value) -> None:
        self.parts = (Clause(template, tuple(params.items())),)

    @classmethod
    def of(cls, parts: tuple[Clause, ...]) -> Reason:
        reason = cls.__new__(cls)
        reason.parts = parts
        return reason

    @classmethod
    def stored(cls, text: str) -> Reason:
        """A reason kept only as its English text: shown as it is in any language."""
        return cls.of((Clause(text, translated=False),))

    def __add__(self, other: Reason) -> Reason:
        """``other`` as the next sentence."""
        first, *rest = other.parts
        return Reason.of((*self.parts, replace(first, joint=Joint.SENTENCE), *rest))

    def completed_by(self, other: Reason) -> Reason:
        """``other`` completing this reason: ``Why it is theirs: what it did.``"""
        first, *rest = other.parts
        return Reason.of((*self.parts, replace(first, joint=Joint.COMPLETION), *rest))

    def clipped(self) -> Reason:
        """The plain strings put in (others' words, of any length) clipped as stored errors
        are (``clip_error``)."""
        return Reason.of(
            tuple(
                replace(part, params=tuple((k, _clipped(v)) for k, v in part.params))
                for part in self.parts
            )
        )

    def render(
        self, text_of: Callable[[Clause], str], join: Callable[[Joint, str, str], str]
    ) -> str:
        """The whole reason from each clause's text (``text_of``), each put after the text
        before it by ``join`` (its joint's template); a completing clause's first letter is
        lowered."""
        text = ""
        for part in self.parts:
            shown = text_of(part)
            if not text:
                text = shown
                continue
            if part.joint is Joint.COMPLETION:
                shown = shown[:1].lower() + shown[1:]
            text = join(part.joint, text, shown)
        return text

    def english(self) -> str:
        """The reason in English, as stored for logs, the CLI and the API."""
        return self.render(_english_clause, _english_join)

    def __str__(self) -> str:
        return self.english()

    def __repr__(self) -> str:
        return f"Reason.of({self.parts!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reason) and other.parts == self.parts

    def __hash__(self) -> int:
        return hash(self.parts)

    # -- stored as JSON ------------------------------------------------------------------

    def to_json(self) -> str:
        return json.dumps([_part_json(p) for p in self.parts], ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Reason:
        """A reason ``to_json`` wrote. Raises ``ValueError`` for anything else."""
        try:
            parts = tuple(_part_of(p) for p in json.loads(text))
        except (TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"not a stored reason: {exc}") from None
        if not parts:
            raise ValueError("not a stored reason: no clause")
        return cls.of(parts)


def _clipped(value: Value) -> Value:
    return clip_error(value) if isinstance(value, str) and not isinstance(value, Term) else value


def instant_text(at: datetime) -> str:
    """An instant in an English reason: ``2024-03-10 09:00:00 UTC``."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _english_value(value: Value) -> str:
    if isinstance(value, datetime):
        return instant_text(value)
    return f"{value:g}" if isinstance(value, float) else english(value)


def _english_join(joint: Joint, before: str, next_: str) -> str:
    return joint.template % {"before": before, "next": next_}


def _english_clause(part: Clause) -> str:
    return part.put_in(part.template, {k: _english_value(v) for k, v in part.params})


def _value_json(value: Value) -> dict[str, Any]:
    if isinstance(value, Points):
        return {"points": value.hundredths}
    if isinstance(value, datetime):
        return {"at": value.astimezone(UTC).isoformat()}
    if isinstance(value, Term):
        return {"term": str(value)}
    if isinstance(value, str):
        return {"text": value}
    return {"number": value}


def _value_of(data: Mapping[str, Any]) -> Value:
    ((kind, raw),) = data.items()
    if kind == "points" and isinstance(raw, int):
        return Points(raw)
    if kind == "at" and isinstance(raw, str):
        return datetime.fromisoformat(raw)
    if kind == "term" and isinstance(raw, str):
        return Term(raw)
    if kind == "text" and isinstance(raw, str):
        return raw
    if kind == "number" and isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return raw
    raise ValueError(f"not a stored reason's value: {data!r}")


def _part_json(part: Clause) -> dict[str, Any]:
    data: dict[str, Any] = {"template": part.template}
    if part.params:
        data["params"] = {k: _value_json(v) for k, v in part.params}
    if part.joint is not Joint.SENTENCE:
        data["joint"] = part.joint.value
    if not part.translated:
        data["translated"] = False
    return data


def _part_of(data: Mapping[str, Any]) -> Clause:
    template = data["template"]
    if not isinstance(template, str):
        raise ValueError("not a stored reason: a template is not text")
    params = tuple((str(k), _value_of(v)) for k, v in dict(data.get("params", {})).items())
    return Clause(
        template,
        params,
        Joint(data.get("joint", Joint.SENTENCE.value)),
        translated=data.get("translated", True) is not False,
    )
