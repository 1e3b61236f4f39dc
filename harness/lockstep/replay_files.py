"""Replay files: operations as JSON, and back.

An operation is written as its `kind` and its fields, values of the model as their type and
fields; a field marked `omit_if_none` is left out while None (a link operation's `proxy`, so a
fleet of one writes its files as it always did); a value's field marked `omit_if_default` is left
out while it has its default (a route's `gateways`, so a route on the first Gateway only writes as
it always did).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from harness.lockstep.operations import OPERATIONS, Operation
from model import Backend, Gateway, GatewayListener, HeaderMatch, Match, Route, Rule, Service

__all__ = ["decode_operations", "encode_operations"]

_VALUE_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (Backend, Gateway, GatewayListener, HeaderMatch, Match, Route, Rule, Service)
}


def _encode(value: Any) -> Any:
    if isinstance(value, Operation):
        fields = {
            f.name: _encode(getattr(value, f.name))
            for f in attrs.fields(type(value))  # type: ignore[arg-type]
            if not (f.metadata.get("omit_if_none") and getattr(value, f.name) is None)
        }
        return {"op": value.kind, **fields}
    if attrs.has(type(value)):
        fields = {
            f.name: _encode(getattr(value, f.name))
            for f in attrs.fields(type(value))
            if not (f.metadata.get("omit_if_default") and getattr(value, f.name) == f.default)
        }
        return {"type": type(value).__name__, **fields}
    if isinstance(value, tuple | list):
        return [_encode(item) for item in value]
    return value


def _decode(value: Any, operations: Mapping[str, type[Operation]] = OPERATIONS) -> Any:
    if isinstance(value, list):
        return tuple(_decode(item, operations) for item in value)
    if isinstance(value, dict):
        fields = {k: _decode(v, operations) for k, v in value.items() if k not in ("op", "type")}
        if "op" in value:
            return operations[value["op"]](**fields)
        return _VALUE_TYPES[value["type"]](**fields)
    return value


def encode_operations(operations: list[Operation]) -> str:
    return json.dumps([_encode(op) for op in operations], indent=1)


def decode_operations(
    text: str, operations: Mapping[str, type[Operation]] = OPERATIONS
) -> list[Operation]:
    """Operations from a replay file, of the kinds in `operations` (default: the built-in ones;
    `extensions.operation_classes` adds a user's); raises ValueError naming what is wrong."""
    try:
        document = json.loads(text)
        if not isinstance(document, list):
            raise ValueError("a replay file holds a JSON list of operations")
        return [_decode(item, operations) for item in document]
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise ValueError(f"not a routeproof replay file: {error}") from error
