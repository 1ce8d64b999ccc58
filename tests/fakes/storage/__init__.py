"""The storage ports in memory, one module per concept as in ``ellity.ports.storage``.

The fake keeps plain domain objects in one ``StoreState``. A unit of work works on a deep
copy of it and publishes the copy on ``commit()``; leaving the block without committing
discards it. Writers hold the store's lock from ``__aenter__`` to ``__aexit__`` (SQLite's
``BEGIN IMMEDIATE``), readers work on the state as it was when they began. Every repository
call yields to the event loop once, like real I/O, so concurrent use cases really interleave.

What is stored is a copy: changing a returned ``Customer`` changes nothing until ``update()``
writes it back, as with a database. Like the SQL adapter, ``add`` sets the id on the object it
is given and ``LedgerRepository.save`` marks the ledger saved.
"""
