"""Referral codes: short, unambiguous when read aloud or typed (no 0/O/1/I)."""

from __future__ import annotations

from ellity.domain.model.errors import InvalidInput
from ellity.domain.model.pin import RandomBelow

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
CODE_LENGTH = 8
DEFAULT_LINK_TEMPLATE = "{shop_url}/?ref={code}"
MAX_TEMPLATE_LENGTH = 500


def generate_referral_code(randbelow: RandomBelow) -> str:
    return "".join(ALPHABET[randbelow(len(ALPHABET))] for _ in range(CODE_LENGTH))


def normalize_referral_code(code: str) -> str:
    """Codes are compared upper-cased and without surrounding spaces."""
    return code.strip().upper()


def validate_link_template(template: str) -> str:
    template = template.strip()
    if "{code}" not in template:
        raise InvalidInput("The referral link template must contain {code}.")
    if len(template) > MAX_TEMPLATE_LENGTH:
        raise InvalidInput(
            "The referral link template may have at most %(max)s characters.",
            max=MAX_TEMPLATE_LENGTH,
        )
    leftover = template.replace("{code}", "").replace("{shop_url}", "")
    if "{" in leftover or "}" in leftover:
        raise InvalidInput("The referral link template may use only {shop_url} and {code}.")
    return template


def referral_link(template: str, *, shop_url: str, code: str) -> str:
    """The merchant's template with the shop URL (no trailing slash) and the code filled in.

    Empty while the template needs a shop URL that the merchant has not set yet.
    """
    if "{shop_url}" in template and not shop_url:
        return ""
    return template.replace("{shop_url}", shop_url.rstrip("/")).replace("{code}", code)
