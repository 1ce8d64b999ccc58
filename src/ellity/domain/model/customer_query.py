"""What staff type into the customer search, and what it means.

- nothing: every customer, newest first;
- text starting with ``@``: customers whose email's domain starts with the rest
  (``@kavovar.cz``);
- other text with ``@``: customers whose email starts with it;
- one word: customers whose last name, then first name, then email starts with it;
- several words: ``first last``, then ``last first``, then the whole text as a last name;
- a referral code (8 characters of the code alphabet): that customer, if there is one;
  otherwise the word is searched like any other.

Tabs and line breaks count as spaces; any other control character (NUL, ESC ...) is refused:
no stored name or email holds one, and PostgreSQL cannot even compare text with a NUL.

Prefixes are compared as the stored search keys are kept: names (and the words of a one-word
search) without case and accents, as Czechs type them (``novak`` finds ``Novák``, ``ruz``
finds ``Růžičková``); emails and domains case-folded. Each alternative is listed in
the order of its first prefix's key, then by id, and a customer appears only under the first
alternative it matches: that order is what keyset paging follows.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Literal

from ellity.domain.model.customer import MAX_NAME_LENGTH
from ellity.domain.model.errors import InvalidInput
from ellity.domain.model.referral import ALPHABET, CODE_LENGTH, normalize_referral_code
from ellity.domain.model.text import has_control_characters, search_fold

SearchField = Literal["email", "email_domain", "first_name", "last_name"]
MAX_QUERY_LENGTH = 200


@dataclass(frozen=True, slots=True)
class Prefix:
    field: SearchField
    text: str  # in the form of the field's stored key


@dataclass(frozen=True, slots=True)
class Alternative:
    """Customers matching every prefix, in the order of ``prefixes[0].field``'s key, then id."""

    prefixes: tuple[Prefix, ...]

    @property
    def order_field(self) -> SearchField:
        return self.prefixes[0].field

    def matches(self, keys: dict[SearchField, str | None]) -> bool:
        return all((keys[p.field] or "").startswith(p.text) for p in self.prefixes)


@dataclass(frozen=True, slots=True)
class CustomerQuery:
    text: str = ""
    alternatives: tuple[Alternative, ...] = ()
    referral_code: str | None = None

    @property
    def is_everyone(self) -> bool:
        return not self.alternatives and self.referral_code is None

    def without_code(self) -> CustomerQuery:
        return CustomerQuery(self.text, self.alternatives, None)


def _alt(*prefixes: tuple[SearchField, str]) -> Alternative:
    return Alternative(tuple(Prefix(field, text) for field, text in prefixes))


def parse_customer_query(text: str) -> CustomerQuery:
    text = " ".join(text.split())[:MAX_QUERY_LENGTH]
    if has_control_characters(text):
        raise InvalidInput(
            "The search must not contain control characters; type a name, an email or a"
            " referral code."
        )
    if not text:
        return CustomerQuery()
    if text.startswith("@"):
        return CustomerQuery(text, (_alt(("email_domain", text[1:].casefold())),))
    if "@" in text:
        return CustomerQuery(text, (_alt(("email", text.casefold())),))
    folded = " ".join(search_fold(text).split())
    words = folded.split(" ")
    if len(words) == 1:
        code = normalize_referral_code(text)
        is_code = len(code) == CODE_LENGTH and all(ch in ALPHABET for ch in code)
        return CustomerQuery(
            text,
            (_alt(("last_name", folded)), _alt(("first_name", folded)), _alt(("email", folded))),
            referral_code=code if is_code else None,
        )
    head, tail = words[0], " ".join(words[1:])
    alternatives = (
        _alt(("last_name", tail), ("first_name", head)),
        _alt(("last_name", head), ("first_name", tail)),
        _alt(("last_name", folded[:MAX_NAME_LENGTH])),
    )
    return CustomerQuery(text, alternatives)


def prefix_end(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix`` (code-point order),
    or None when there is none. ``key >= prefix AND key < prefix_end(prefix)`` is an index
    range that holds exactly the keys starting with ``prefix``."""
    chars = list(prefix)
    while chars:
        code = ord(chars[-1]) + 1
        if 0xD800 <= code <= 0xDFFF:  # surrogates cannot be stored
            code = 0xE000
        if code <= sys.maxunicode:
            chars[-1] = chr(code)
            return "".join(chars)
        chars.pop()
    return None
