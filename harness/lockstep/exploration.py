"""Bounded-exhaustive exploration of small scopes: which sequences `explore` runs, and why.

Breadth first over abstract states (`abstraction`): from the initial state, every letter of the
alphabet that applies is a transition, and every transition reachable within `depth` atomic
operations is run against the real stack. A sequence is not extended once it reaches an abstract
state already expanded by an equal or shorter path (breadth first finds the shorter one first);
the transition into that state is still run. `exhaustive` extends every sequence.

The plan is pure: the model and the history decide the abstract state, so the whole plan is
known before anything runs. Each sequence checks every invariant after each of its steps, so a
sequence also runs every transition of its prefixes: only sequences that are no other planned
sequence's prefix (the leaves) are run, and they cover every planned transition.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from harness.lockstep.abstraction import AbstractState, History, abstract
from harness.lockstep.alphabet import Letter
from harness.lockstep.operations import Operation
from model import ModelState

__all__ = ["Move", "Plan", "plan"]


@attrs.frozen
class Move:
    """One atomic operation of a sequence, with the letter that built it."""

    letter: str
    operation: Operation


@attrs.frozen
class Plan:
    sequences: tuple[tuple[Move, ...], ...]
    """The leaves to run, shortest first."""
    states: int
    """Abstract states reached (the initial one included)."""
    expanded: int
    """Abstract states whose every applicable letter was tried."""
    transitions: int
    """(abstract state, letter) pairs the sequences run."""
    planned: int
    """Sequences in the plan before leaves absorb their prefixes (the BFS tree's edges)."""
    depth: int
    exhaustive: bool

    @property
    def steps(self) -> int:
        return sum(len(sequence) for sequence in self.sequences)


@attrs.frozen
class _Node:
    path: tuple[Move, ...]
    model: ModelState
    history: History


def _settled(model: ModelState) -> ModelState:
    """What the session's check leaves: a converged proxy, withdrawn pods stopped."""
    return model.settled()


def plan(
    initial: ModelState, letters: Sequence[Letter], depth: int, *, exhaustive: bool = False
) -> Plan:
    """Every sequence of at most `depth` letters breadth first explores from `initial`."""
    if depth < 0:
        raise ValueError(f"depth must be >= 0, not {depth}")
    start = _Node((), _settled(initial), History())
    seen: set[AbstractState] = {abstract(start.model, start.history)}
    transitions: set[tuple[AbstractState, str]] = set()
    paths: list[tuple[Move, ...]] = []
    frontier = [start]
    expanded = 0
    for _ in range(depth):
        following: list[_Node] = []
        for node in frontier:
            expanded += 1
            here = abstract(node.model, node.history)
            for letter in letters:
                operation = letter.operation(node.model)
                if operation is None:
                    continue
                model = _settled(operation.on_model(node.model))
                history = node.history.after(operation.kind, operation.target)
                path = (*node.path, Move(letter.label, operation))
                paths.append(path)
                transitions.add((here, letter.label))
                reached = abstract(model, history)
                if exhaustive or reached not in seen:
                    seen.add(reached)
                    following.append(_Node(path, model, history))
        frontier = following
    prefixes = {path[:cut] for path in paths for cut in range(len(path))}
    leaves = [path for path in paths if path not in prefixes]
    leaves.sort(key=len)
    return Plan(
        sequences=tuple(leaves),
        states=len(seen),
        expanded=expanded,
        transitions=len(transitions),
        planned=len(paths),
        depth=depth,
        exhaustive=exhaustive,
    )
