"""Charger requests checked against the `ocpp` library's own JSON schemas, compiled.

The library validates with jsonschema's generic validator, about a millisecond and a half
per TransactionEvent: most of the bridge's CPU per message. fastjsonschema compiles the
same schema files into Python code once, several times faster. Errors map to OCPP error
codes as the library maps them. Like the library, formats (`date-time`) are not enforced
here: timestamps are parsed, leniently, where they are used.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from importlib.resources import files
from typing import Any

import fastjsonschema
from ocpp.exceptions import (
    FormatViolationError,
    OCPPError,
    ProtocolError,
    TypeConstraintViolationError,
)

_ANY = {"date-time": lambda value: True, "uri": lambda value: True}


@lru_cache(maxsize=256)
def request_validator(version: str, action: str) -> Callable[[Any], Any] | None:
    """The compiled schema of a charger's request, or None for an action OCPP lacks."""
    if not action.isidentifier():
        return None
    name = action if version == "1.6" else action + "Request"
    path = files("ocpp") / ("v" + version.replace(".", "")) / "schemas" / f"{name}.json"
    if not path.is_file():
        return None
    schema = json.loads(path.read_text(encoding="utf-8-sig"))
    return fastjsonschema.compile(schema, formats=_ANY, use_default=False)


def validate_request(version: str, action: str, untrusted_payload: Any) -> None:
    """Nothing, or the OCPPError to answer with (unknown actions are left to the router,
    which answers NotImplemented / NotSupported)."""
    validator = request_validator(version, action)
    if validator is None:
        return
    try:
        validator(untrusted_payload)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise _error(exc) from exc


def _error(exc: fastjsonschema.JsonSchemaValueException) -> OCPPError:
    cause = {"cause": exc.message[:300]}
    if exc.rule in ("type", "maxLength"):
        return TypeConstraintViolationError(details=cause)
    if exc.rule == "required":
        return ProtocolError(details=cause)
    return FormatViolationError(details=cause)
