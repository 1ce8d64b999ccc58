"""The system emails' wording: Jinja2 templates per email and locale, text and HTML.

``templates/email/<template>.<locale>.txt`` is the plain-text body and sets ``subject``;
``<template>.<locale>.html`` is the HTML body (autoescaped). Every value a template uses must
be given (``StrictUndefined``): a missing value is a bug, not an empty line in an email.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from vokativ import vokativ

from ellity.domain.model.system_email import OutgoingEmail

TEMPLATE_DIR = Path(__file__).parent / "templates" / "email"

#: A first name vokativ can decline: one word of Latin letters (Czech ones included), perhaps
#: with a hyphen; anything else (initials, other scripts, digits) is greeted as it is written.
_DECLINABLE = re.compile(r"[^\W\d_]{2,}(?:-[^\W\d_]{2,})?")
_LATIN = re.compile(r"[A-Za-zÀ-ɏ-]+")


def vocative(first_name: str) -> str:
    """The Czech vocative of a first name for a greeting: ``Petr`` → ``Petře``, ``Jana`` →
    ``Jano``, ``Tomáš`` → ``Tomáši`` (the ``vokativ`` library); a name it cannot decline is
    left as it is. The capitals of the name are kept."""
    name = first_name.strip()
    if not _DECLINABLE.fullmatch(name) or not _LATIN.fullmatch(name):
        return first_name
    return "-".join(_like(vokativ(part, last_name=False), part) for part in name.split("-"))


def _like(declined: str, original: str) -> str:
    """``declined`` (lower case) with the capitals of ``original``."""
    if original.isupper() and len(original) > 1:
        return declined.upper()
    return declined[:1].upper() + declined[1:] if original[:1].isupper() else declined


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


class JinjaEmailTemplates:
    def __init__(self, directory: Path = TEMPLATE_DIR) -> None:
        self._env = Environment(
            loader=FileSystemLoader(directory),
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self._env.filters["vocative"] = vocative

    def render(self, email: OutgoingEmail) -> RenderedEmail:
        name = f"{email.template.value}.{email.locale}"
        values = dict(email.values)
        text = self._env.get_template(f"{name}.txt").make_module(values)
        subject = " ".join(str(getattr(text, "subject", "")).split())  # one header line
        if not subject:
            raise ValueError(f"the template {name}.txt sets no subject")
        return RenderedEmail(
            subject=subject,
            text=str(text).lstrip("\n"),
            html=self._env.get_template(f"{name}.html").render(values),
        )
