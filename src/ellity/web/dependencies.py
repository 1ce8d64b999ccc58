"""What the web handlers are given: the app's ``Deps`` and its parts, by parameter name.

The lifespan keeps the bundle in the app's state; ``app_deps`` is the one place that reads it
there, for Litestar's dependency injection and for what runs outside a handler (guards, the
session backend). A handler declares what it uses (``clock: Injected[Clock]``) and Litestar
passes it the part of the bundle of that name, read at each request.
"""

from __future__ import annotations

from typing import Any, TypeAlias, TypeVar, cast

from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import SkipValidation

from ellity.deps import Deps

T = TypeVar("T")

#: A handler parameter filled with the dependency of its name. The values are the app's own
#: adapters (typed by ports, which are Protocols), so Litestar does not validate them.
Injected: TypeAlias = NamedDependency[SkipValidation[T]]


def app_deps(state: State) -> Deps:
    """The bundle the lifespan put into the app's state."""
    return cast(Deps, state.deps)


def _part(field: str) -> Provide:
    def part(deps: Injected[Deps]) -> Any:
        return getattr(deps, field)

    return Provide(part, sync_to_thread=False)


#: Parameter name → the field of ``Deps`` it is given. The unit-of-work factory is called
#: ``uow_factory`` as in the use cases, which take it under that name (and a ``uow`` made by it).
_PARTS = {
    "settings": "settings",
    "uow_factory": "uow",
    "clock": "clock",
    "rng": "rng",
    "hasher": "hasher",
    "secret_box": "secret_box",
    "ping_database": "ping_database",
    "export_encoder": "export_encoder",
    "export_rows": "export_rows",
    "excel_encoder": "excel_encoder",
    "marketing": "marketing",
    "queue": "queue",
    "mailer": "mailer",
    "login_attempts": "login_attempts",
}

#: The dependencies of every handler: ``deps`` and its parts.
BUNDLE_DEPENDENCIES: dict[str, Provide] = {
    "deps": Provide(app_deps, sync_to_thread=False),
    **{name: _part(field) for name, field in _PARTS.items()},
}
