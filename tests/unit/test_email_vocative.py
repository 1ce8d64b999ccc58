"""Czech emails greet the customer in the vocative (``vokativ``); English ones as written."""

from __future__ import annotations

import pytest

from ellity.adapters.email_templates import JinjaEmailTemplates, vocative
from ellity.domain.model.system_email import EmailTemplate, OutgoingEmail


@pytest.mark.parametrize(
    ("name", "greeted"),
    [
        ("Petr", "Petře"),
        ("Jana", "Jano"),
        ("Tomáš", "Tomáši"),
        ("Zdeněk", "Zdeňku"),
        ("Ondřej", "Ondřeji"),
        ("Marie", "Marie"),
        ("petr", "petře"),  # the customer's own capitals are kept
        ("Jan-Petr", "Jane-Petře"),
    ],
)
def test_a_czech_first_name_is_declined(name: str, greeted: str) -> None:
    assert vocative(name) == greeted


@pytest.mark.parametrize("name", ["J.", "李", "Xi Li", "O'Neil", "Ann2", " "])
def test_a_name_vokativ_cannot_decline_is_left_as_it_is(name: str) -> None:
    assert vocative(name) == name


def _email(locale: str, first_name: str) -> OutgoingEmail:
    return OutgoingEmail(
        to="petr@example.cz",
        sender_name="Kavárna U Anny",
        template=EmailTemplate.PIN_ISSUED,
        locale=locale,  # type: ignore[arg-type]
        message_id="<1@ellity>",
        values={
            "first_name": first_name,
            "programme": "Kavárna U Anny",
            "shop_url": "",
            "pin": "012345",
            "reason": "issued",
        },
    )


def test_a_czech_email_greets_petr_as_petre_in_its_text_and_html() -> None:
    rendered = JinjaEmailTemplates().render(_email("cs", "Petr"))
    assert "Dobrý den, Petře," in rendered.text
    assert "Dobrý den, Petře," in rendered.html


def test_an_english_email_greets_by_the_name_as_written() -> None:
    rendered = JinjaEmailTemplates().render(_email("en", "Petr"))
    assert "Petr" in rendered.text
    assert "Petře" not in rendered.text
