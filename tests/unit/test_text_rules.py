"""Text Ellity stores never holds control characters (PostgreSQL cannot even store NUL)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ellity.domain.model.api_token import clean_token_name
from ellity.domain.model.customer import clean_email, clean_name, clean_shop_customer_id
from ellity.domain.model.errors import InvalidInput
from ellity.domain.model.ledger import clean_note, clean_order_ref
from ellity.domain.model.text import has_control_characters

CLEANERS: dict[str, Callable[[str], object]] = {
    "email": lambda v: clean_email(f"ann{v}@example.cz"),
    "name": lambda v: clean_name(f"Ann{v}Nová", "first name"),
    "shop id": lambda v: clean_shop_customer_id(f"c{v}1"),
    "order ref": lambda v: clean_order_ref(f"o{v}1"),
    "token name": lambda v: clean_token_name(f"shop{v}1"),
}


@pytest.mark.parametrize("what", CLEANERS)
@pytest.mark.parametrize("character", ["\x00", "\x1b", "\x7f", "\n", "\t"])
def test_identifiers_and_names_refuse_control_characters(what: str, character: str) -> None:
    with pytest.raises(InvalidInput, match="control characters"):
        CLEANERS[what](character)


@pytest.mark.parametrize("what", CLEANERS)
def test_identifiers_and_names_keep_ordinary_unicode(what: str) -> None:
    CLEANERS[what]("é")


def test_a_note_may_hold_line_breaks_and_tabs_but_no_other_control_characters() -> None:
    assert clean_note(" first line\r\n\tsecond line ") == "first line\r\n\tsecond line"
    for character in ("\x00", "\x1b", "\x7f"):
        with pytest.raises(InvalidInput, match="control characters"):
            clean_note(f"a{character}b")


@pytest.mark.parametrize(
    ("value", "line_breaks_allowed", "found"),
    [
        ("plain text", False, False),
        ("Nováková – 100 %", False, False),
        ("a\nb", False, True),
        ("a\nb", True, False),
        ("a\x00b", True, True),
        ("\x7f", True, True),
        ("\u0085", False, False),  # C1 characters are not refused
    ],
)
def test_control_characters_are_c0_and_del(
    value: str, line_breaks_allowed: bool, found: bool
) -> None:
    assert has_control_characters(value, allow_line_breaks=line_breaks_allowed) is found
