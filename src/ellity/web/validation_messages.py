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
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import HTTPException, SerializationException, ValidationException

from ellity.web.i18n import N_

_EXPECTED = re.compile(r"^Expected `(?P<want>[^`]+)`, got `(?P<got>[^`]+)`$")
_OUT_OF_RANGE = re.compile(r"^Expected `(?P<want>[^`]+)` (?P<rule>[<>]=? ?\S+)$")
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<field>[^`]+)`$")
_NOT_A_CHOICE = re.compile(r"^Invalid enum value (?P<value>.+)$")
_POINTS_FIELDS = frozenset({"points"})

#: ``gettext`` for these messages: ``_("The field '%(field)s' ...", field=...)``. The API's
#: messages are English (``english``); the pages pass their language's.
Gettext = Callable[..., str]


def english(message: str, /, **values: Any) -> str:
    return message % values if values else message


_JSON_TYPES = {
    "str": N_("a string"),
    "int": N_("a whole number"),
    "float": N_("a number"),
    "bool": N_("true or false"),
    "null": N_("null"),
    "object": N_("an object"),
    "array": N_("an array"),
}


def refusal_message(
    request: Request[Any, Any, Any], exc: HTTPException, _: Gettext = english
) -> str:
    """What Litestar refused (a parameter out of range, an unreadable form), said plainly:
    in English on the API, in the page's language (``_``) on the merchant pages."""
    status = exc.status_code
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list) and exc.extra:
        return " ".join(
            _field_message(request, item, _) for item in exc.extra if isinstance(item, dict)
        )
    if status == 404:
        return _(
            "There is no %(method)s %(path)s in the API.",
            method=request.method,
            path=request.url.path,
        )
    if status == 405:
        allowed = (exc.headers or {}).get("allow", "")
        return _(
            "%(method)s is not allowed on %(path)s; use %(allowed)s.",
            method=request.method,
            path=request.url.path,
            allowed=allowed,
        )
    if status == 413:
        return _(
            "The request body is larger than the API accepts (%(limit)s).",
            limit=_body_limit(request, _),
        )
    detail = exc.detail or ""
    if isinstance(exc.__cause__, SerializationException):  # the body could not be decoded
        return _(
            "The body is not valid JSON (%(detail)s).",
            detail=detail.removeprefix("JSON is malformed: "),
        )
    try:
        generic = detail == HTTPStatus(status).phrase
    except ValueError:
        generic = False
    return (
        detail
        if detail and not generic
        else _("The request was refused (%(status)s).", status=status)
    )


def _field_message(request: Request[Any, Any, Any], item: dict[str, Any], _: Gettext) -> str:
    """One of Litestar's validation messages, said plainly."""
    raw = str(item.get("message", "")).strip()
    key = str(item.get("key", ""))
    source = str(getattr(item.get("source"), "value", item.get("source", "")))
    if source == "body" and key == "data":
        if raw == "'data'":
            return _("The request needs a JSON object as its body.")
        if m := _MISSING.match(raw):
            return _("The field '%(field)s' is required.", field=m["field"])
        if m := _UNKNOWN.match(raw):
            return _(
                "The field '%(field)s' is not part of this call; check its spelling.",
                field=m["field"],
            )
        if m := _EXPECTED.match(raw):
            return _("The body must be a JSON object, not %(got)s.", got=_describe(m["got"], _))
        return _("The body is not valid: %(raw)s.", raw=raw)
    where = (
        _("The field '%(field)s'", field=key)
        if source == "body"
        else _("The %(source)s parameter '%(key)s'", source=source, key=key)
    )
    if (m := _EXPECTED.match(raw)) is not None:
        if source == "body" and key in _POINTS_FIELDS and m["got"] in ("int", "float"):
            return _(
                "The field '%(field)s' must be a decimal string such as \"12.50\"; points are"
                " never sent as JSON numbers.",
                field=key,
            )
        return _(
            "%(where)s must be %(want)s, not %(got)s.",
            where=where,
            want=_describe(m["want"], _),
            got=_describe(m["got"], _),
        )
    if (m := _OUT_OF_RANGE.match(raw)) is not None:
        return _(
            "%(where)s must be %(want)s %(rule)s.",
            where=where,
            want=_describe(m["want"], _),
            rule=m["rule"],
        )
    if (m := _NOT_A_CHOICE.match(raw)) is not None:
        choices = _body_choices(request, key) if source == "body" else []
        if choices:
            return _(
                "%(where)s must be one of: %(choices)s; not %(value)s.",
                where=where,
                choices=", ".join(choices),
                value=m["value"],
            )
        return _("%(where)s cannot be %(value)s.", where=where, value=m["value"])
    if raw:
        return _("%(where)s is not valid: %(raw)s.", where=where, raw=raw)
    return _("%(where)s is not valid.", where=where)


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


def _describe(json_type: str, _: Gettext) -> str:
    parts = [part.strip() for part in json_type.split("|")]
    return _(" or ").join(_(_JSON_TYPES[p]) if p in _JSON_TYPES else p for p in parts)


def _body_limit(request: Request[Any, Any, Any], _: Gettext) -> str:
    limit = request.route_handler.resolve_request_max_body_size()
    if not limit:
        return _("a smaller one")
    if limit % 1024 == 0:
        return _("at most %(size)s KiB", size=limit // 1024)
    return _("at most %(size)s bytes", size=limit)
