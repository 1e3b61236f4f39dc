"""Known bug classes that can be switched back into the SUT, one mechanism each.

Every mutant is off by default. Each is implemented in the component where the real bug lived
(cache bookkeeping, stream state machine, response ordering, publishing, failure policy), so the
harness has to find it through ordinary behaviour; nothing here makes a test fail on purpose.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

__all__ = ["MUTANTS", "MutantSpec", "Mutants"]


@attrs.frozen
class MutantSpec:
    name: str
    layer: str
    modes: frozenset[str]
    mechanism: str
    failure_policy: str | None = None
    """A mutant that only exists together with a failure policy (the seed bug) names it here."""
    implies: tuple[str, ...] = ()
    """Mechanism mutants this combination switches on."""
    listed: bool = True
    """A row of BUGS.md; False for the bug classes added beyond it."""
    equivalent: str = ""
    """Why no client that follows the protocol can observe this mutant in this SUT (then
    `modes` is empty: the kill table lists it apart, and a live test witnesses the reason)."""


_BOTH = frozenset({"delta", "sotw"})

MUTANTS: dict[str, MutantSpec] = {
    spec.name: spec
    for spec in (
        MutantSpec(
            "resubscribe-ignored",
            "xds delta stream bookkeeping",
            frozenset({"delta"}),
            "known versions survive an unsubscribe; a re-subscribe at an unchanged hash is not"
            " answered",
        ),
        MutantSpec(
            "sotw-new-names-ignored",
            "xds sotw stream bookkeeping",
            frozenset({"sotw"}),
            "respond only when a resource version differs; a request adding a name at the same"
            " version gets nothing",
        ),
        MutantSpec(
            "eds-not-resent-on-cds",
            "xds stream bookkeeping",
            _BOTH,
            "after a Cluster update the unchanged ClusterLoadAssignment is not sent again",
        ),
        MutantSpec(
            "nack-loop",
            "xds stream bookkeeping",
            _BOTH,
            "a NACK is treated as a request at the last accepted version, so the rejected"
            " config is sent again at once",
        ),
        MutantSpec(
            "stale-nonce-drops-subscription",
            "xds stream state machine",
            frozenset(),
            "a request with a stale nonce is dropped whole, including its change of names",
            equivalent=(
                "the stream keeps one response in flight per type, so Envoy's Delta requests"
                " are never stale (a change of subscriptions carries no nonce; an ACK names the"
                " response in flight) and a stale SotW request is followed by the ACK of the"
                " response in flight, which repeats every name"
            ),
        ),
        MutantSpec(
            "unordered-push",
            "xds response ordering",
            _BOTH,
            "responses of different types go out at once in arbitrary order (RDS before CDS),"
            " removals included",
        ),
        MutantSpec(
            "dangling-reference",
            "control-plane publishing",
            _BOTH,
            "a snapshot is published without the consistency check",
        ),
        MutantSpec(
            "seed",
            "failure policy + delta bookkeeping",
            frozenset({"delta"}),
            "failure policy inline-error together with resubscribe-ignored",
            failure_policy="inline-error",
            implies=("resubscribe-ignored",),
        ),
        MutantSpec(
            "rds-error-hides-cache-bug",
            "failure policy + delta bookkeeping",
            frozenset({"delta"}),
            "failure policy rds-error together with resubscribe-ignored",
            failure_policy="rds-error",
            implies=("resubscribe-ignored",),
        ),
        # Bug classes beyond BUGS.md, each from a real control plane's history.
        MutantSpec(
            "deletion-not-a-change",
            "xds stream bookkeeping",
            _BOTH,
            "a type is pushed only when a present resource changed; a deletion alone sends"
            " nothing (Delta: no removed_resources; SotW: no smaller state of the world)",
            listed=False,
        ),
        MutantSpec(
            "initial-versions-trusted",
            "xds delta stream bookkeeping",
            frozenset({"delta"}),
            "on a new stream, a name in initial_resource_versions counts as held at the current"
            " version whatever version the client names, so what it missed is never sent",
            listed=False,
        ),
        MutantSpec(
            "warming-cluster-starved",
            "xds stream bookkeeping",
            _BOTH,
            "endpoints are served from the current snapshot only: a Cluster deleted while the"
            " response carrying it is in flight warms without its ClusterLoadAssignment, and"
            " Envoy holds the CDS ACK that would let the deletion through",
            listed=False,
        ),
    )
}


@attrs.frozen
class Mutants:
    """The set of mechanism mutants switched on; combinations expand to their mechanisms."""

    names: frozenset[str] = frozenset()

    @classmethod
    def of(cls, names: Iterable[str]) -> Mutants:
        expanded: set[str] = set()
        for name in names:
            spec = MUTANTS.get(name)
            if spec is None:
                known = ", ".join(sorted(MUTANTS))
                raise ValueError(f"unknown mutant {name!r}; known mutants: {known}")
            expanded.add(name)
            expanded.update(spec.implies)
        return cls(frozenset(expanded))

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str) and name not in MUTANTS:
            raise KeyError(f"no mutant named {name!r}")
        return name in self.names

    def failure_policy(self) -> str | None:
        """The failure policy a combination mutant requires, if any."""
        for name in sorted(self.names):
            policy = MUTANTS[name].failure_policy
            if policy is not None:
                return policy
        return None
