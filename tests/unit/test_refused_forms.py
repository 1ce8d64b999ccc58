"""A form handler's refusals are shown on the form's page, with what was sent and why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from litestar import Litestar, Response, post
from litestar.params import URLEncodedBody

from ellity.domain.model.errors import Conflict, DomainError, InvalidInput, NotFound
from ellity.web.pages.common import AnyRequest
from ellity.web.pages.errors import FORM_ERRORS, refused_form_page, status_for
from tests.asgi import asgi_transport

BASE_URL = "http://testserver.local"
THE_DEPS = object()  # stands for the app's ``Deps``: the page gets what the state holds


@dataclass
class NoteForm:
    note: str = ""


async def shown_again(
    request: AnyRequest, deps: Any, form: NoteForm | None, error: DomainError
) -> Response[dict[str, Any]]:
    return Response(
        {
            "note": form.note if form is not None else None,
            "error": error.message,
            "same_deps": deps is THE_DEPS,
        },
        status_code=status_for(error),
    )


@post("/note", status_code=303)
@refused_form_page(shown_again)
async def save_note(request: AnyRequest, data: URLEncodedBody[NoteForm]) -> None:
    if data.note == "taken":
        raise Conflict("That note is taken.")
    if data.note == "gone":
        raise NotFound("No such note.")
    if not data.note:
        raise InvalidInput("A note needs some text.")


@post("/touch", status_code=303)
@refused_form_page(shown_again, errors=(InvalidInput,))
async def touch(request: AnyRequest) -> None:
    raise InvalidInput("Nothing to touch.")


def not_a_form_error(_: AnyRequest, exc: DomainError) -> Response[str]:
    return Response(f"handled elsewhere: {exc.message}", status_code=418)


APP = Litestar([save_note, touch], exception_handlers={NotFound: not_a_form_error})
APP.state.deps = THE_DEPS


async def send(path: str, form: dict[str, str]) -> httpx.Response:
    transport = asgi_transport(APP)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        return await client.post(path, data=form)


async def test_a_refused_form_is_shown_again_with_what_was_typed_and_why() -> None:
    answer = await send("/note", {"note": "taken"})

    assert answer.status_code == 409
    assert answer.json() == {"note": "taken", "error": "That note is taken.", "same_deps": True}


async def test_invalid_input_is_shown_again_under_the_page_status_of_the_error_table() -> None:
    answer = await send("/note", {"note": ""})

    assert answer.status_code == 400
    assert answer.json()["error"] == "A note needs some text."


async def test_a_form_without_fields_is_shown_again_without_one() -> None:
    answer = await send("/touch", {})

    assert answer.status_code == 400
    assert answer.json()["note"] is None


async def test_an_error_the_form_cannot_correct_reaches_the_exception_handlers() -> None:
    form_errors: tuple[type[DomainError], ...] = FORM_ERRORS
    assert NotFound not in form_errors
    answer = await send("/note", {"note": "gone"})

    assert (answer.status_code, answer.text) == (418, "handled elsewhere: No such note.")


async def test_an_accepted_form_answers_as_its_handler_does() -> None:
    answer = await send("/note", {"note": "fine"})

    assert answer.status_code == 303
