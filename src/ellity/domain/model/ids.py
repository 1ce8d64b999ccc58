"""The ids of merchants, customers and staff users: each its own type, so that one cannot be
passed where another is expected (``earn_points(customer_id, merchant_id, ...)`` is a type
error). They are plain ``int`` at run time; a value read from storage or from a request
becomes one where it enters (``CustomerId(row.id)``)."""

from __future__ import annotations

from typing import NewType

MerchantId = NewType("MerchantId", int)
CustomerId = NewType("CustomerId", int)
StaffId = NewType("StaffId", int)

#: The keyset cursor before every customer (ids start at 1): a scan after it starts at the first.
BEFORE_FIRST_CUSTOMER = CustomerId(0)


def optional_customer_id(value: int | None) -> CustomerId | None:
    """The customer an optional reference names, or ``None`` when it names nobody."""
    return None if value is None else CustomerId(value)
