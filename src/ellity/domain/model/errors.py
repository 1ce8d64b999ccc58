"""Domain errors. Every message is written for the merchant who will read it."""

from __future__ import annotations


class DomainError(Exception):
    """A rule of the loyalty programme refused the request."""

    code = "invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(DomainError):
    """A value given to Ellity cannot be used as it is."""

    code = "invalid_input"


class NotFound(DomainError):
    code = "not_found"


class CustomerNotFound(NotFound):
    def __init__(self, customer_ref: object) -> None:
        super().__init__(f"No customer {customer_ref} exists in this programme.")


class MerchantNotFound(NotFound):
    def __init__(self, slug: str) -> None:
        super().__init__(f"No merchant with the slug '{slug}' exists.")


class ApiTokenNotFound(NotFound):
    def __init__(self, token_id: int) -> None:
        super().__init__(f"No active API token {token_id} exists in this programme.")


class InvalidApiToken(DomainError):
    """A request to the e-shop API carries no API token, or one that is wrong or revoked."""

    code = "unauthorized"


class Conflict(DomainError):
    """The request contradicts the current state; repeating it will not help."""

    code = "conflict"


class InsufficientPoints(Conflict):
    code = "insufficient_points"

    def __init__(self, *, available: str, wanted: str) -> None:
        super().__init__(f"The customer holds {available} points; {wanted} points cannot be taken.")


class DuplicateCustomer(Conflict):
    code = "duplicate_customer"


class DuplicateMerchant(Conflict):
    code = "duplicate_merchant"


class OrderAlreadyUsed(Conflict):
    code = "order_already_used"

    def __init__(self, order_ref: str) -> None:
        super().__init__(
            f"The order reference '{order_ref}' has already been used for another customer."
        )


class RegisteredCustomerHasNoPin(Conflict):
    code = "registered_customer_has_no_pin"

    def __init__(self) -> None:
        super().__init__("A registered customer has no PIN; only anonymous customers get one.")


class SmtpTestFailed(DomainError):
    """The merchant's SMTP server did not take the test email; the message says why, in the
    merchant's words (never the password)."""

    code = "test_email_failed"
