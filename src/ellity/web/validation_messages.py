"""What Litestar refused, said plainly: the same words on the API and on the merchant pages.

Litestar reports a request that does not fit a handler's signature with msgspec's validation
messages (``Expected `int`, got `str```, ``Object missing required field `note```). They are
rewritten here into sentences that name the field or parameter and what it should be. The
patterns match the messages of the msgspec version pinned in ``constraints.txt``; a message
that matches none is shown as msgspec wrote it, so an upgrade can only make a message plainer
or rawer, never lose it.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import HTTPException, SerializationException, ValidationException

_EXPECTED = re.compile(r"^Expected `(?P<want>[^`]+)`, got `(?P<got>[^`]+)`$")
_OUT_OF_RANGE = re.compile(r"^Expected `(?P<want>[^`]+)` (?P<rule>[<>]=? ?\S+)$")
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<field>[^`]+)`$")
_NOT_A_CHOICE = re.compile(r"^Invalid enum value (?P<value>.+)$")
_POINTS_FIELDS = frozenset({"points"})
_JSON_TYPES = {
    "str": "a string",
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "null": "null",
    "object": "an object",
    "array": "an array",
}


def refusal_message(request: Request[Any, Any, Any], exc: HTTPException) -> str:
    """What Litestar refused (a parameter out of range, an unreadable form), said plainly;
    the merchant pages show the same words as the API."""
    status = exc.status_code
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list) and exc.extra:
        return " ".join(
            _field_message(request, item) for item in exc.extra if isinstance(item, dict)
        )
    if status == 404:
        return f"There is no {request.method} {request.url.path} in the API."
    if status == 405:
        allowed = (exc.headers or {}).get("allow", "")
        return f"{request.method} is not allowed on {request.url.path}; use {allowed}."
    if status == 413:
        return f"The request body is larger than the API accepts ({_body_limit(request)})."
    detail = exc.detail or ""
    if isinstance(exc.__cause__, SerializationException):  # the body could not be decoded
        return f"The body is not valid JSON ({detail.removeprefix('JSON is malformed: ')})."
    try:
        generic = detail == HTTPStatus(status).phrase
    except ValueError:
        generic = False
    return detail if detail and not generic else f"The request was refused ({status})."


def _field_message(request: Request[Any, Any, Any], item: dict[str, Any]) -> str:
    """One of Litestar's validation messages, said plainly."""
    raw = str(item.get("message", "")).strip()
    key = str(item.get("key", ""))
    source = str(getattr(item.get("source"), "value", item.get("source", "")))
    if source == "body" and key == "data":
        if raw == "'data'":
            return "The request needs a JSON object as its body."
        if m := _MISSING.match(raw):
            return f"The field '{m['field']}' is required."
        if m := _UNKNOWN.match(raw):
            return f"The field '{m['field']}' is not part of this call; check its spelling."
        if m := _EXPECTED.match(raw):
            return f"The body must be a JSON object, not {_describe(m['got'])}."
        return f"The body is not valid: {raw}."
    where = f"The field '{key}'" if source == "body" else f"The {source} parameter '{key}'"
    if (m := _EXPECTED.match(raw)) is not None:
        if source == "body" and key in _POINTS_FIELDS and m["got"] in ("int", "float"):
            return (
                f"The field '{key}' must be a decimal string such as \"12.50\";"
                " points are never sent as JSON numbers."
            )
        return f"{where} must be {_describe(m['want'])}, not {_describe(m['got'])}."
    if (m := _OUT_OF_RANGE.match(raw)) is not None:
        return f"{where} must be {_describe(m['want'])} {m['rule']}."
    if (m := _NOT_A_CHOICE.match(raw)) is not None:
        choices = _body_choices(request, key) if source == "body" else []
        if choices:
            return f"{where} must be one of: {', '.join(choices)}; not {m['value']}."
        return f"{where} cannot be {m['value']}."
    return f"{where} is not valid: {raw}." if raw else f"{where} is not valid."


def _body_choices(request: Request[Any, Any, Any], key: str) -> list[str]:
    """The values the body field ``key`` may take, when its type is an enum or a literal
    (read from the handler's ``data`` type); none when it is not one of those."""
    data = request.route_handler.parsed_fn_signature.parameters.get("data")
    if data is None:
        return []
    try:
        info = msgspec.inspect.type_info(data.annotation)
    except (TypeError, ValueError):
        return []
    for field in getattr(info, "fields", ()):
        if field.encode_name == key:
            return _choices_of(field.type)
    return []


def _choices_of(info: msgspec.inspect.Type) -> list[str]:
    if isinstance(info, msgspec.inspect.Metadata):  # a type with a description
        return _choices_of(info.type)
    if isinstance(info, msgspec.inspect.UnionType):
        return [choice for member in info.types for choice in _choices_of(member)]
    if isinstance(info, msgspec.inspect.EnumType):
        return [str(member.value) for member in info.cls]
    if isinstance(info, msgspec.inspect.LiteralType):
        return [str(value) for value in info.values]
    return []


def _describe(json_type: str) -> str:
    return " or ".join(_JSON_TYPES.get(part.strip(), part.strip()) for part in json_type.split("|"))


def _body_limit(request: Request[Any, Any, Any]) -> str:
    limit = request.route_handler.resolve_request_max_body_size()
    if not limit:
        return "a smaller one"
    return f"at most {limit // 1024} KiB" if limit % 1024 == 0 else f"at most {limit} bytes"
