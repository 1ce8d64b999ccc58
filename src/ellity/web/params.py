"""Ids in URLs, bounded where they enter.

Customer and ledger ids are 64-bit in the database, API token ids 32-bit: a number outside
``1..MAX_ID`` (``1..MAX_TOKEN_ID``) cannot name anything, and the drivers refuse to even
send it. So an id in a path or a cursor in a query is checked here, before any use case
runs: the merchant pages answer such a path with 404 and such a query parameter with 400
(``ellity.web.pages.errors``), the API with 400 (its schema states the range).
"""

from __future__ import annotations

from typing import Annotated, TypeAlias

from litestar.params import PathParameter, QueryParameter

MAX_ID = 2**63 - 1
MAX_TOKEN_ID = 2**31 - 1

#: A customer's id in a page's path.
CustomerPathId: TypeAlias = Annotated[int, PathParameter(ge=1, le=MAX_ID)]

#: An API token's id in a page's path.
TokenPathId: TypeAlias = Annotated[int, PathParameter(ge=1, le=MAX_TOKEN_ID)]

#: A keyset cursor (a customer's or ledger entry's id) in a page's query; absent: the first
#: page.
Cursor: TypeAlias = Annotated[int | None, QueryParameter(ge=1, le=MAX_ID)]
