"""A user's own operations and invariants, treated like the built-in ones.

A control-plane team knows failure paths routeproof does not: a secret rotation, a config reload,
a leader election. It adds them as an `Extensions` value:

- an operation is an `Operation` subclass (a frozen attrs class with a `kind` of its own): its
  model transition (`on_model`), its stack side (`on_stack`) and its undo (`undo`), exactly as
  the built-in operations state theirs;
- letters (`alphabet.Letter`) build it from the model state, or say it does not apply there;
- an invariant is a callable `(stack, model) -> violations`, run after every step with the
  built-in ones.

`check` draws among the letters that apply (the machine's `user_operation` rule); their kinds join
the change kinds swarm testing enables or leaves out per example, and the compound rules (changes
behind a held connection, a change undone at once) draw them like the built-in changes. `explore`
spells its sequences with them too, and replay files name them by kind.

Workers and replays run in fresh processes, so extensions travel by name: `StackSettings.extensions`
holds an import path `package.module:NAME` (the module must be importable where the run is), which
each process loads once (`load`).
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

import attrs

from harness.lockstep.alphabet import Letter
from harness.lockstep.operations import OPERATIONS, Operation, publish_world
from harness.lockstep.verdict import Violation

if TYPE_CHECKING:
    from harness.lockstep.stack import Stack
    from model import ModelState

__all__ = [
    "Extensions",
    "Invariant",
    "Letter",
    "Operation",
    "Violation",
    "load",
    "operation_classes",
    "publish_world",
]
"""What an extension needs, importable from here: `Letter`, `Operation`, `Violation` and
`publish_world` (a store change's stack side) are the harness's own."""

Invariant = Callable[["Stack", "ModelState"], Iterable[Violation]]
"""A user invariant: what it finds wrong after a step, given the stack and the model."""

_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def _unique_kinds(
    _instance: object, _attribute: object, operations: tuple[type[Operation], ...]
) -> None:
    seen: set[str] = set()
    for operation in operations:
        kind = getattr(operation, "kind", None)
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"{operation.__name__} has no `kind`")
        if kind in OPERATIONS or kind in seen:
            raise ValueError(f"operation kind {kind!r} is taken")
        if not attrs.has(operation):
            raise ValueError(f"{operation.__name__} must be an attrs class (replay files)")
        seen.add(kind)


@attrs.frozen
class Extensions:
    """What a user adds: operations (their classes), the letters that build them, invariants."""

    operations: tuple[type[Operation], ...] = attrs.field(
        default=(), converter=tuple, validator=_unique_kinds
    )
    letters: tuple[Letter, ...] = attrs.field(default=(), converter=tuple)
    invariants: tuple[Invariant, ...] = attrs.field(default=(), converter=tuple)

    def __attrs_post_init__(self) -> None:
        kinds = self.kinds
        for letter in self.letters:
            if letter.kind not in kinds:
                raise ValueError(
                    f"letter {letter.label!r} builds kind {letter.kind!r}, which no extension "
                    f"operation has (known: {', '.join(sorted(kinds)) or 'none'})"
                )

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(operation.kind for operation in self.operations)

    def applicable(self, model: ModelState, kind: str | None = None) -> list[Operation]:
        """The operations the letters (of `kind`, or all) build in `model`."""
        built = (
            letter.operation(model)
            for letter in self.letters
            if kind is None or letter.kind == kind
        )
        return [operation for operation in built if operation is not None]

    def check(self, stack: Stack, model: ModelState) -> list[Violation]:
        """Every user invariant after a step; one that raises is a violation, not a crash."""
        found: list[Violation] = []
        for invariant in self.invariants:
            name = getattr(invariant, "__name__", type(invariant).__name__)
            try:
                found += list(invariant(stack, model))
            except Exception as error:  # a user's invariant is judged, never trusted
                found.append(
                    Violation("user-invariant", f"{name} raised {type(error).__name__}: {error}")
                )
        return found


NONE = Extensions()


@functools.cache
def load(path: str | None) -> Extensions:
    """The `Extensions` at import path `package.module:NAME` (None: no extensions).

    ValueError saying what is wrong with the path or with what it names."""
    if path is None:
        return NONE
    if not _PATH.match(path):
        raise ValueError(f"extensions {path!r}: expected an import path 'package.module:NAME'")
    module_name, name = path.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"extensions {path!r}: cannot import {module_name}: {error}") from error
    found = getattr(module, name, None)
    if not isinstance(found, Extensions):
        raise ValueError(
            f"extensions {path!r}: {name} is {type(found).__name__}, not routeproof Extensions"
        )
    return found


def operation_classes(path: str | None) -> Mapping[str, type[Operation]]:
    """Every operation a replay file of these settings may name: built-in and the user's."""
    extensions = load(path)
    return {**OPERATIONS, **{operation.kind: operation for operation in extensions.operations}}
