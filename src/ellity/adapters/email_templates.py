"""The system emails' wording: Jinja2 templates per email and locale, text and HTML.

``templates/email/<template>.<locale>.txt`` is the plain-text body and sets ``subject``;
``<template>.<locale>.html`` is the HTML body (autoescaped). Every value a template uses must
be given (``StrictUndefined``): a missing value is a bug, not an empty line in an email.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from ellity.domain.model.system_email import OutgoingEmail

TEMPLATE_DIR = Path(__file__).parent / "templates" / "email"


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
