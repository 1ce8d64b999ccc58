"""Domain errors. Every message is written for the merchant who will read it.

An error carries its English ``template`` with ``%(name)s`` placeholders and the ``params``
to put in; ``message`` is the English text (the JSON API's). The merchant pages translate the
template and format the values (points, counts) in the page's language, so the domain never
formats for a reader it does not know.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable


@runtime_checkable
class Displayable(Protocol):
    """A value with a text for people in a locale (``Points``)."""

    def display(self, locale: Literal["cs", "en"]) -> str: ...


class Minutes:
    """A number of minutes in a message: ``15 minutes``, ``15 minut`` (the accusative a
    Czech message puts it in: ``na 1 minutu``, ``na 3 minuty``)."""

    __slots__ = ("count",)

    def __init__(self, count: int) -> None:
        self.count = count

    def display(self, locale: Literal["cs", "en"]) -> str:
        n = self.count
        if locale == "cs":
            word = "minutu" if n == 1 else "minuty" if 2 <= n <= 4 else "minut"
        else:
            word = "minute" if n == 1 else "minutes"
        return f"{n} {word}"


class Term(str):
    """A word put into an error's message that the pages translate too (``first name``)."""

    __slots__ = ()


def english(value: object) -> str:
    """A parameter as the English message shows it."""
    return value.display("en") if isinstance(value, Displayable) else str(value)


class DomainError(Exception):
    """A rule of the loyalty programme refused the request."""

    code = "invalid"

    def __init__(self, message: str, /, **params: object) -> None:
        text = message % {k: english(v) for k, v in params.items()} if params else message
        super().__init__(text)
        self.template = message
        self.params = params
        self.message = text


class InvalidInput(DomainError):
    """A value given to Ellity cannot be used as it is."""

    code = "invalid_input"


class NotFound(DomainError):
    code = "not_found"


class CustomerNotFound(NotFound):
    def __init__(self, customer_ref: object) -> None:
        super().__init__(
            "No customer %(customer)s exists in this programme.", customer=customer_ref
        )


class MerchantNotFound(NotFound):
    def __init__(self, slug: str) -> None:
        super().__init__("No merchant with the slug '%(slug)s' exists.", slug=slug)


class ApiTokenNotFound(NotFound):
    def __init__(self, token_id: int) -> None:
        super().__init__("No active API token %(token)s exists in this programme.", token=token_id)


class InvalidApiToken(DomainError):
    """A request to the e-shop API carries no API token, or one that is wrong or revoked."""

    code = "unauthorized"


class Conflict(DomainError):
    """The request contradicts the current state; repeating it will not help."""

    code = "conflict"


class InsufficientPoints(Conflict):
    code = "insufficient_points"

    def __init__(self, *, available: Displayable, wanted: Displayable) -> None:
        super().__init__(
            "The customer holds %(available)s points; %(wanted)s points cannot be taken.",
            available=available,
            wanted=wanted,
        )


class DuplicateCustomer(Conflict):
    code = "duplicate_customer"


class DuplicateMerchant(Conflict):
    code = "duplicate_merchant"


class OrderAlreadyUsed(Conflict):
    code = "order_already_used"

    def __init__(self, order_ref: str) -> None:
        super().__init__(
            "The order reference '%(order)s' has already been used for another customer.",
            order=order_ref,
        )


class RegisteredCustomerHasNoPin(Conflict):
    code = "registered_customer_has_no_pin"

    def __init__(self) -> None:
        super().__init__("A registered customer has no PIN; only anonymous customers get one.")


class SmtpTestFailed(DomainError):
    """The merchant's SMTP server did not take the test email; the message says why, in the
    merchant's words (never the password)."""

    code = "test_email_failed"
