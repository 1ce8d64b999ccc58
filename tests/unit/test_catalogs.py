"""The pages' gettext catalogs hold every text the templates and the web code show.

The messages are extracted the way ``make messages`` does (Babel's extraction with
``babel.cfg``); a message without a Czech translation, a fuzzy or obsolete entry, or a
translation whose placeholders differ from its message fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from ellity.web.i18n import LOCALE_DIR, UI_LANGUAGES, catalog_path, extract_messages

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "src" / "ellity" / "web"


def extracted() -> dict[str | tuple[str, ...] | list[str], str]:
    """Every message of the pages, with where it was found."""
    return {
        message.id: f"{message.locations[0][0]}:{message.locations[0][1]}"
        for message in extract_messages(ROOT / "babel.cfg")
        if message.id
    }


def catalog(language: str) -> Catalog:
    with catalog_path(language).open("rb") as source:
        return read_po(source, locale=language)


MESSAGES = extracted()


def test_the_extraction_finds_the_templates_and_the_python_messages() -> None:
    assert "Customers" in MESSAGES  # base.html
    assert "The points have been added." in MESSAGES  # pages/customers.py
    assert "Nobody" in MESSAGES  # N_() in pages/integration.py
    assert "The number of points must be greater than zero." in MESSAGES  # domain/model
    assert "The customer holds %(available)s points; %(wanted)s points cannot be taken." in (
        MESSAGES  # super().__init__ of an error
    )
    assert "first name" in MESSAGES  # a Term
    assert len(MESSAGES) > 250


@pytest.mark.parametrize("language", UI_LANGUAGES)
def test_every_message_of_the_pages_is_translated(language: str) -> None:
    translations = catalog(language)
    missing = []
    for message, where in MESSAGES.items():
        key = message[0] if isinstance(message, tuple) else message
        entry = translations.get(key)
        strings = [] if entry is None else entry.string
        strings = [strings] if isinstance(strings, str) else list(strings)
        if entry is None or not strings or not all(s.strip() for s in strings):
            missing.append(f"{where}: {message!r}")
    assert missing == [], f"not in {catalog_path(language)} (run `make messages`)"


@pytest.mark.parametrize("language", UI_LANGUAGES)
def test_a_catalog_has_no_fuzzy_obsolete_or_stale_entry(language: str) -> None:
    translations = catalog(language)
    wanted = {_key(m) for m in MESSAGES}
    assert [m.id for m in translations if m.id and m.fuzzy] == []
    assert list(translations.obsolete) == []
    stale = [m.id for m in translations if m.id and _key(m.id) not in wanted]
    assert stale == []


def _key(message_id: str | tuple[str, ...] | list[str]) -> str:
    return message_id if isinstance(message_id, str) else message_id[0]


@pytest.mark.parametrize("language", UI_LANGUAGES)
def test_translations_keep_the_placeholders_of_their_messages(language: str) -> None:
    problems = [
        (message.id, [str(e) for e in errors])
        for message, errors in catalog(language).check()
        if errors
    ]
    assert problems == []


def test_czech_plurals_have_three_forms() -> None:
    czech = catalog("cs")
    assert czech.num_plurals == 3
    plural = [m for m in czech if isinstance(m.id, tuple)]
    assert plural
    assert all(len(m.string) == 3 for m in plural)


def test_the_catalogs_live_in_the_package() -> None:
    assert WEB.parent / "locale" == LOCALE_DIR
    assert (LOCALE_DIR / "messages.pot").exists()
