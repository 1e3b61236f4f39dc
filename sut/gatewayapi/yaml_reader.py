"""Manifest text to plain documents, refusing what kubectl refuses and what would crash us.

- Manifests are UTF-8 (YAML 1.2 and Kubernetes read them so); other bytes are an error naming
  the offset, not a `UnicodeDecodeError`.
- A mapping may not repeat a key. kubectl refuses duplicate keys; accepting them silently lets a
  missing `---` merge two documents into one, the second overwriting the first.
- Nesting is bounded (`MAX_DEPTH`): PyYAML composes recursively, and a document nested a few
  thousand levels deep would end in a RecursionError. No Gateway API object nests near it.

Every refusal is a `yaml.YAMLError` naming the line, so the loader reports it as invalid YAML
of that document.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node

__all__ = ["MAX_DEPTH", "decode_utf8", "load_all"]

MAX_DEPTH = 64
"""Nesting levels a manifest may use (Gateway API objects use about ten)."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader with a nesting bound and no duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.YAMLError(
                    f"nested more than {MAX_DEPTH} levels deep (line {mark.line + 1})"
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: dict[object, int] = {}
        for key_node, _value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: SafeLoader's own error says so below
            if first is None:
                seen[key] = key_node.start_mark.line + 1
            else:
                raise ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"duplicate key {key!r} (first on line {first}); a missing '---'"
                    " between two documents looks like this",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def load_all(text: str) -> list[Any]:
    """Every document of a multi-document YAML text; raises yaml.YAMLError as described."""
    return list(yaml.load_all(text, Loader=_StrictLoader))


def decode_utf8(data: bytes) -> str:
    """The text of a manifest file; ValueError naming the first byte that is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValueError(
            f"not UTF-8: byte 0x{data[error.start]:02x} at offset {error.start} (line {line})"
        ) from None
