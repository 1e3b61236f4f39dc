"""Known bug classes that can be switched back into the SUT, one mechanism each.

Every mutant is off by default. Each is implemented in the component where the real bug lived
(cache bookkeeping, stream state machine, response ordering, publishing, failure policy), so the
harness has to find it through ordinary behaviour; nothing here makes a test fail on purpose.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

import attrs

__all__ = ["MUTANTS", "TRANSPORTS", "Mutant", "MutantSpec", "Mutants"]

TRANSPORTS = frozenset({"ads", "per-type"})
"""How Envoy meets the xDS server: one ADS stream, or a stream per type. Per type, Envoy opens a
stream per subscription (each RouteConfiguration, Cluster's endpoints and Secret on its own,
asking for that one name; CDS and LDS as wildcards), closes it when the subscription ends, and
the server orders nothing across streams."""


class Mutant(enum.StrEnum):
    """Every known bug class, by the name `--mutant` takes. Code asks `Mutant.X in mutants`,
    never a string, so a typo is an AttributeError at import, not a mutant that never fires."""

    RESUBSCRIBE_IGNORED = "resubscribe-ignored"
    SOTW_NEW_NAMES_IGNORED = "sotw-new-names-ignored"
    EDS_NOT_RESENT_ON_CDS = "eds-not-resent-on-cds"
    NACK_LOOP = "nack-loop"
    STALE_NONCE_DROPS_SUBSCRIPTION = "stale-nonce-drops-subscription"
    UNORDERED_PUSH = "unordered-push"
    DANGLING_REFERENCE = "dangling-reference"
    SEED = "seed"
    RDS_ERROR_HIDES_CACHE_BUG = "rds-error-hides-cache-bug"
    DELETION_NOT_A_CHANGE = "deletion-not-a-change"
    INITIAL_VERSIONS_TRUSTED = "initial-versions-trusted"
    WARMING_CLUSTER_STARVED = "warming-cluster-starved"
    VERSION_FROM_STORE = "version-from-store"
    VERSIONS_RESTART_WITH_PROCESS = "versions-restart-with-process"
    UNREQUESTED_RESOURCES = "unrequested-resources"
    NONCE_FROM_VERSION = "nonce-from-version"
    REMOVALS_NOT_DEFERRED = "removals-not-deferred"
    REMOVALS_UNSCOPED = "removals-unscoped"
    REQUEST_VERSION_TRUSTED = "request-version-trusted"
    EMPTY_SNAPSHOT_ON_START = "empty-snapshot-on-start"
    PARTIAL_STORE_ON_START = "partial-store-on-start"
    PER_CALL_DEADLINE_ONLY = "per-call-deadline-only"


@attrs.frozen
class MutantSpec:
    name: Mutant
    layer: str
    modes: frozenset[str]
    mechanism: str
    failure_policy: str | None = None
    """A mutant that only exists together with a failure policy (the seed bug) names it here."""
    implies: tuple[Mutant, ...] = ()
    """Mechanism mutants this combination switches on."""
    listed: bool = True
    """A row of BUGS.md; False for the bug classes added beyond it."""
    equivalent: str = ""
    """Why no client that follows the protocol can observe this mutant in this SUT (then
    `modes` is empty: the kill table lists it apart, and a live test witnesses the reason)."""
    not_per_type: str = ""
    """Why the mechanism does not exist on per-type streams (then `transports` is ADS only)."""
    transports: frozenset[str] = attrs.field(init=False)
    """The transports in which the mechanism exists (see `TRANSPORTS`)."""

    def __attrs_post_init__(self) -> None:
        transports = TRANSPORTS - {"per-type"} if self.not_per_type else TRANSPORTS
        object.__setattr__(self, "transports", transports)


_BOTH = frozenset({"delta", "sotw"})

MUTANTS: dict[Mutant, MutantSpec] = {
    spec.name: spec
    for spec in (
        MutantSpec(
            Mutant.RESUBSCRIBE_IGNORED,
            "xds delta stream bookkeeping",
            frozenset({"delta"}),
            "known versions survive an unsubscribe; a re-subscribe at an unchanged hash is not"
            " answered",
            not_per_type=(
                "per type a name is never unsubscribed and asked again on one stream: Envoy opens "
                "a stream per RouteConfiguration, Cluster and Secret subscription and closes it "
                "when the subscription ends, and wildcard CDS/LDS never unsubscribe, so a "
                "re-subscribe is always the first request of a new stream"
            ),
        ),
        MutantSpec(
            Mutant.SOTW_NEW_NAMES_IGNORED,
            "xds sotw stream bookkeeping",
            frozenset({"sotw"}),
            "respond only when a resource version differs; a request adding a name at the same"
            " version gets nothing",
            not_per_type=(
                "per type the names of a stream never change: each by-name stream asks for its "
                "one name from its first request, and CDS/LDS are wildcards"
            ),
        ),
        MutantSpec(
            Mutant.EDS_NOT_RESENT_ON_CDS,
            "xds stream bookkeeping",
            _BOTH,
            "after a Cluster update the unchanged ClusterLoadAssignment is not sent again",
            not_per_type=(
                "the resend is a mark from CDS to EDS on one stream; per type an updated Cluster "
                "subscribes to its endpoints on a new stream, whose first request is answered "
                "anyway"
            ),
        ),
        MutantSpec(
            Mutant.NACK_LOOP,
            "xds stream bookkeeping",
            _BOTH,
            "a NACK is treated as a request at the last accepted version, so the rejected"
            " config is sent again at once",
        ),
        MutantSpec(
            Mutant.STALE_NONCE_DROPS_SUBSCRIPTION,
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
            Mutant.UNORDERED_PUSH,
            "xds response ordering",
            _BOTH,
            "responses of different types go out at once in arbitrary order (RDS before CDS),"
            " removals included",
            not_per_type=(
                "its mechanism is the order across types on one stream; per-type streams promise "
                "no order, so the server sends each type when its own stream allows"
            ),
        ),
        MutantSpec(
            Mutant.DANGLING_REFERENCE,
            "control-plane publishing",
            _BOTH,
            "a snapshot is published without the consistency check",
        ),
        MutantSpec(
            Mutant.SEED,
            "failure policy + delta bookkeeping",
            frozenset({"delta"}),
            "failure policy inline-error together with resubscribe-ignored",
            failure_policy="inline-error",
            implies=(Mutant.RESUBSCRIBE_IGNORED,),
            not_per_type=("it implies resubscribe-ignored, which has no mechanism per type"),
        ),
        MutantSpec(
            Mutant.RDS_ERROR_HIDES_CACHE_BUG,
            "failure policy + delta bookkeeping",
            frozenset({"delta"}),
            "failure policy rds-error together with resubscribe-ignored",
            failure_policy="rds-error",
            implies=(Mutant.RESUBSCRIBE_IGNORED,),
            not_per_type=("it implies resubscribe-ignored, which has no mechanism per type"),
        ),
        # Bug classes beyond BUGS.md, each from a real control plane's history.
        MutantSpec(
            Mutant.DELETION_NOT_A_CHANGE,
            "xds stream bookkeeping",
            _BOTH,
            "a type is pushed only when a present resource changed; a deletion alone sends"
            " nothing (Delta: no removed_resources; SotW: no smaller state of the world)",
            listed=False,
        ),
        MutantSpec(
            Mutant.INITIAL_VERSIONS_TRUSTED,
            "xds delta stream bookkeeping",
            frozenset({"delta"}),
            "on a new stream, a name in initial_resource_versions counts as held at the current"
            " version whatever version the client names, so what it missed is never sent",
            listed=False,
        ),
        MutantSpec(
            Mutant.WARMING_CLUSTER_STARVED,
            "xds stream bookkeeping",
            _BOTH,
            "endpoints are served from the current snapshot only: a Cluster deleted while the"
            " response carrying it is in flight warms without its ClusterLoadAssignment, and"
            " Envoy holds the CDS ACK that would let the deletion through",
            listed=False,
            not_per_type=(
                "an EDS stream holds no Clusters, so nothing retains endpoints for them: per type "
                "the correct server also serves endpoints from the snapshot only"
            ),
        ),
        MutantSpec(
            Mutant.VERSION_FROM_STORE,
            "control-plane versioning",
            _BOTH,
            "resource versions are a hash of the Gateway API store plus the resource's type and"
            " name, so a reconcile that changes the output but not the store publishes new"
            " content under old versions",
            listed=False,
        ),
        MutantSpec(
            Mutant.VERSIONS_RESTART_WITH_PROCESS,
            "control-plane versioning",
            _BOTH,
            "versions are per-process counters per resource (1, 2, ... per new content), so a"
            " restarted control plane gives old versions to other content",
            listed=False,
        ),
        MutantSpec(
            Mutant.UNREQUESTED_RESOURCES,
            "xds stream response shaping",
            _BOTH,
            "RouteConfiguration and ClusterLoadAssignment responses carry every resource of"
            " the type, not only the names the client subscribed to",
            listed=False,
        ),
        MutantSpec(
            Mutant.NONCE_FROM_VERSION,
            "xds stream",
            _BOTH,
            "a response's nonce is its version instead of a fresh value, so responses at one"
            " version share a nonce and an old request is taken for the ACK of a newer response",
            listed=False,
        ),
        MutantSpec(
            Mutant.REMOVALS_NOT_DEFERRED,
            "xds response ordering",
            _BOTH,
            "removals skip make-before-break: a Cluster, ClusterLoadAssignment or"
            " RouteConfiguration is removed with the first response of its type, before the"
            " Listeners and RouteConfigurations that stop naming it",
            listed=False,
            not_per_type=(
                "removal gates wait for other types on the same stream; per-type streams have none"
            ),
        ),
        MutantSpec(
            Mutant.REMOVALS_UNSCOPED,
            "xds delta stream bookkeeping",
            frozenset({"delta"}),
            "removed_resources come from every name of the type the server saw in any snapshot"
            " for the node, on this stream or an earlier one, so a client is told to remove names"
            " it never held or asked for (one created and deleted while it was away)",
            listed=False,
        ),
        MutantSpec(
            Mutant.REQUEST_VERSION_TRUSTED,
            "xds sotw cache",
            frozenset({"sotw"}),
            "a request whose version_info is the current type version is taken to mean the"
            " client holds every name it asks for, so nothing is sent for it, new names included",
            listed=False,
        ),
        MutantSpec(
            Mutant.EMPTY_SNAPSHOT_ON_START,
            "control-plane startup",
            _BOTH,
            "a starting control plane publishes an empty snapshot before its first translation,"
            " so a proxy connecting meanwhile is told every Listener and Cluster is gone",
            listed=False,
        ),
        MutantSpec(
            Mutant.PARTIAL_STORE_ON_START,
            "control-plane startup",
            _BOTH,
            "a starting control plane first translates its store before the HTTPRoutes have"
            " synced, publishing Gateways without routes, then the full store",
            listed=False,
        ),
        MutantSpec(
            Mutant.PER_CALL_DEADLINE_ONLY,
            "control-plane hooks",
            _BOTH,
            "the translation has no budget of its own: each hook call gets its full deadline, so"
            " a hanging extension with fail-open multiplies the wait by the number of calls",
            listed=False,
        ),
    )
}


@attrs.frozen
class Mutants:
    """The set of mechanism mutants switched on; combinations expand to their mechanisms."""

    names: frozenset[Mutant] = frozenset()

    @classmethod
    def of(cls, names: Iterable[str]) -> Mutants:
        """From names as the command line gives them; ValueError naming the known ones."""
        expanded: set[Mutant] = set()
        for name in names:
            try:
                mutant = Mutant(name)
            except ValueError:
                known = ", ".join(sorted(MUTANTS))
                raise ValueError(f"unknown mutant {name!r}; known mutants: {known}") from None
            expanded.add(mutant)
            expanded.update(MUTANTS[mutant].implies)
        return cls(frozenset(expanded))

    def __contains__(self, mutant: object) -> bool:
        if not isinstance(mutant, Mutant):
            raise TypeError(f"ask with a Mutant member, not {mutant!r}")
        return mutant in self.names

    def failure_policy(self) -> str | None:
        """The failure policy a combination mutant requires, if any."""
        for name in sorted(self.names):
            policy = MUTANTS[name].failure_policy
            if policy is not None:
                return policy
        return None
