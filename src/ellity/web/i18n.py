"""The merchant pages in Czech and English: gettext catalogs, the page's language, and
formatting by it.

The catalogs are ``ellity/locale/<language>/LC_MESSAGES/messages.po``, extracted from the
templates and the web code (``babel.cfg``) and compiled to ``.mo`` by ``make install``. A
catalog whose ``.mo`` is missing or older than its ``.po`` is compiled in memory, so a
checkout whose catalogs changed since the last install still shows every translation.

A page is in its staff user's language; before anyone logs in (log-in, first run), in the
browser's: Czech unless it prefers English.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from babel import Locale as BabelLocale
from babel.dates import format_date, format_datetime
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po
from babel.numbers import format_decimal
from babel.support import Translations

from ellity.domain.model.errors import Displayable, Term
from ellity.domain.model.money import LOCALES, Locale
from ellity.domain.model.reason import Clause, Joint, Reason

LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
DOMAIN = "messages"
#: The languages of the pages; the first is the default.
UI_LANGUAGES: tuple[Locale, ...] = ("cs", "en")
DEFAULT_LANGUAGE: Locale = "cs"


def ui_language(value: str | None) -> Locale:
    """A supported page language from a stored or sent code (``cs``, ``en``)."""
    code = (value or "").strip().lower()[:2]
    return code if code in LOCALES and code in UI_LANGUAGES else DEFAULT_LANGUAGE


def browser_language(accept_language: str) -> Locale:
    """The page language for a browser's ``Accept-Language`` before anyone logs in: the
    first of its languages the pages speak, Czech when none is."""
    weighted: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        code = tag.strip().lower().split("-")[0]
        if code in UI_LANGUAGES and quality > 0:
            weighted.append((-quality, position, code))
    return ui_language(min(weighted)[2]) if weighted else DEFAULT_LANGUAGE


def catalog_path(language: str, extension: str = "po") -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.{extension}"


@functools.cache
def translations(language: str) -> Translations:
    """The compiled catalog of ``language`` (a page language)."""
    po, mo = catalog_path(language), catalog_path(language, "mo")
    if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
        with mo.open("rb") as compiled:
            return Translations(compiled, domain=DOMAIN)
    with po.open("rb") as source:
        catalog = read_po(source, locale=language, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)


class Gettext(Protocol):
    """``_("The %(name)s token is created.", name=...)``: a message in the page's language,
    with its named values put in."""

    def __call__(self, message: str, /, **values: Any) -> str: ...


class Ngettext(Protocol):
    def __call__(self, singular: str, plural: str, n: int, /, **values: Any) -> str: ...


def gettext_for(language: str) -> Gettext:
    catalog = translations(ui_language(language))

    def gettext(message: str, /, **values: Any) -> str:
        text = catalog.gettext(message)
        return text % values if values else text

    return gettext


def ngettext_for(language: str) -> Ngettext:
    catalog = translations(ui_language(language))

    def ngettext(singular: str, plural: str, n: int, /, **values: Any) -> str:
        text = catalog.ngettext(singular, plural, n)
        return text % {"num": n, **values}

    return ngettext


# -- formatting by the page's language ---------------------------------------------------------


def _babel_locale(language: str) -> BabelLocale:
    return BabelLocale.parse(ui_language(language))


NBSP = "\u00a0"


def date_text(value: date | None, language: str) -> str:
    """``10. 3. 2024`` in Czech (never broken over two lines), ``Mar 10, 2024`` in English."""
    if value is None:
        return ""
    text = format_date(value, "medium", locale=_babel_locale(language))
    return text.replace(" ", NBSP) if ui_language(language) == "cs" else text


def datetime_text(value: datetime, time_zone: str, language: str) -> str:
    """A moment in the merchant's time zone: ``10. 3. 2024 10:00`` / ``Mar 10, 2024, 10:00``."""
    local = value.astimezone(ZoneInfo(time_zone))
    if ui_language(language) == "cs":
        return f"{date_text(local.date(), 'cs')} {local.hour}:{local.minute:02d}"
    return format_datetime(local, "MMM d, y, HH:mm", locale=_babel_locale(language))


def short_day(value: date, language: str) -> str:
    """A chart axis's day: ``10. 3.`` in Czech, ``Mar 10`` in English."""
    return format_date(
        value, "d. M." if ui_language(language) == "cs" else "MMM d", locale=_babel_locale(language)
    )


def number_text(value: int, language: str) -> str:
    """A plain count: ``1 250`` in Czech, ``1,250`` in English."""
    return format_decimal(value, locale=_babel_locale(language))


def translated(
    template: str, params: Mapping[str, object], language: str, *, time_zone: str = "UTC"
) -> str:
    """An English ``template`` (a domain error's, a reason's clause) in ``language`` with its
    ``params`` put in for the reader: points by the locale (digit groups never broken), a
    ``Term`` translated, an instant in ``time_zone``, a measure (``float``) by the locale;
    anything else (ids, others' words) as it is."""
    _ = gettext_for(language)

    def shown(value: object) -> str:
        if isinstance(value, Displayable):
            return value.display(ui_language(language)).replace(" ", NBSP)
        if isinstance(value, Term):
            return _(value)
        if isinstance(value, datetime):
            return datetime_text(value, time_zone, language)
        if isinstance(value, float):
            return format_decimal(value, locale=_babel_locale(language))
        return str(value)

    return _(template, **{name: shown(value) for name, value in params.items()})


def reason_text(reason: Reason, language: str, *, time_zone: str) -> str:
    """A reason in ``language``: each clause translated with its values put in, joined by its
    joint's template translated (a clause that completes the one before: first letter
    lowered). Text stored before reasons had clauses is shown as it is."""
    _ = gettext_for(language)

    def clause_text(part: Clause) -> str:
        if not part.translated:
            return part.template
        return translated(part.template, part.values(), language, time_zone=time_zone)

    def join(joint: Joint, before: str, next_: str) -> str:
        return _(joint.template, before=before, next=next_)

    return reason.render(clause_text, join)


def N_(message: str) -> str:
    """Marks ``message`` for the catalogs; it is translated where it is shown."""
    return message


# -- extraction (``make messages``) -----------------------------------------------------------

PACKAGE = LOCALE_DIR.parent
#: Where the messages are: the pages (templates and web code), the domain's errors and
#: reasons, and the reasons the ports give (``BudgetExhausted``).
SOURCES = (PACKAGE / "web", PACKAGE / "domain", PACKAGE / "ports")
#: Besides gettext's names: the domain errors, ``Term``, ``Reason`` and a reason's ``joint``,
#: whose first argument is the English message the pages translate.
ERROR_KEYWORDS = (
    "DomainError",
    "InvalidInput",
    "Conflict",
    "NotFound",
    "DuplicateMerchant",
    "DuplicateCustomer",
    "IntegrationNotReady",
    "SmtpTestFailed",
    "WebhookUnreadable",
    "Term",
    "Reason",
    "joint",
    "__init__",  # ``super().__init__("...")`` in an error class
)


def extract_messages(config: Path) -> Catalog:
    """Every message of the pages, found by Babel with ``config`` (``babel.cfg``)."""
    with config.open() as mapping:
        method_map, options_map = parse_mapping_cfg(mapping)  # type: ignore[no-untyped-call]
    keywords = {**DEFAULT_KEYWORDS, **dict.fromkeys(ERROR_KEYWORDS)}
    catalog = Catalog(project="Ellity", version="0.1.0", copyright_holder="Ellity")
    for source in SOURCES:
        for filename, lineno, message, comments, context in extract_from_dir(
            source, method_map, options_map, keywords=keywords, strip_comment_tags=True
        ):
            where = (str(Path(source.name) / filename), lineno)
            catalog.add(message, None, [where], auto_comments=comments, context=context)
    return catalog


def main() -> None:
    """``python -m ellity.web.i18n babel.cfg``: writes ``locale/messages.pot``."""
    import sys  # noqa: PLC0415

    catalog = extract_messages(Path(sys.argv[1] if len(sys.argv) > 1 else "babel.cfg"))
    with (LOCALE_DIR / f"{DOMAIN}.pot").open("wb") as out:
        write_po(out, catalog, width=0, no_location=True, sort_output=True)


if __name__ == "__main__":
    main()
