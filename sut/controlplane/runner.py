"""The control-plane runner: store -> translate -> hooks -> validate -> snapshot -> cache.

Rules of this module:
1. Every stage before the cache is pure; only this runner talks to the extension and the cache.
2. A hook failure (unavailable, deadline, error status, invalid output, or output Envoy would
   refuse) with fail-open publishes the translation without the failed part: a failed call is
   "no change", invalid output (known only once every hook answered) drops all of the
   extension's changes; the result says FAIL_OPEN either way. Fail-closed hands the failure
   policy what the hooks before the failed call made (the bare translation if that is invalid).
   With `translation_budget` set, the hook calls of one reconcile share that many seconds: each
   call (retries and backoff included) gets min(its deadline, what remains), and once the budget
   is spent every remaining call fails at once as "deadline", so a hanging extension delays a
   reconcile by at most the budget, not calls x deadline. Those failures are handled as above.
3. A snapshot that is not self-consistent is never published; the last good one stays.
4. The readiness listener is never rewritten.
5. Publishing an equal snapshot is a no-op (content-hash versions).
6. `start` is the first reconcile of a freshly constructed control plane; `apply` every later one.
7. With `proxyless_node_id` set, proxyless gRPC clients get a snapshot of their own under that
   node id (`sut.translate.proxyless`, from the same translation). The extension never sees it,
   and it moves with Envoy's: whenever Envoy's snapshot is published (whatever the outcome,
   failure policies included: the proxyless snapshot carries no extension work to lose, so it is
   the translation's), the proxyless one is published too; when Envoy's is held back (kept last
   good, refused as inconsistent), so is it. Either snapshot failing the consistency guard
   refuses both. Its versions follow the same scheme as Envoy's. It serves the default node's
   Gateways (rule 8).
8. With `gateway_nodes`, each mapped Gateway's proxies get a snapshot of their own under its node
   id, the closure of its Listeners (`sut.controlplane.nodes`); the others stay under `node_id`.
   A reconcile still translates once and runs the hooks and the failure policy once (an
   extension failure hits every Gateway alike); each node's snapshot is then published as rule
   5 says, any node's failing the consistency guard refuses them all, and keep-last-good keeps
   them all. A mapped Gateway missing from the store gets a snapshot without Gateway listeners.
   Listener ports clash only between Gateways of one node (`TranslateOptions.gateway_fleets`).
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Iterable, Mapping

import attrs

from sut.controlplane.hooks import HookRun, run_hooks
from sut.controlplane.nodes import split
from sut.controlplane.policy import FailurePolicy, with_inline_error, with_rds_error
from sut.controlplane.validate import envoy_rejections
from sut.controlplane.versions import ProcessVersions, store_versioned
from sut.errors import ExtensionError
from sut.extension import Budget, Clock, ExtensionClient, Hook
from sut.gatewayapi import ObjectKey, Resources, Statuses
from sut.mutants import Mutant, Mutants
from sut.translate import (
    ProxylessResources,
    TranslateOptions,
    Translation,
    XdsResources,
    to_proxyless,
    translate,
)
from sut.xds import Snapshot, SnapshotCache, consistency_errors

__all__ = ["ControlPlane", "ControlPlaneSettings", "Outcome", "ReconcileResult"]


class Outcome(enum.StrEnum):
    """What one reconcile did."""

    PUBLISHED = "published"
    UNCHANGED = "unchanged"
    FAIL_OPEN = "published-fail-open"
    FAILURE_POLICY = "published-failure-policy"
    KEPT_LAST_GOOD = "kept-last-good"
    REFUSED_INCONSISTENT = "refused-inconsistent"


def _node_pairs(
    items: Mapping[ObjectKey, str] | Iterable[tuple[ObjectKey, str]],
) -> tuple[tuple[ObjectKey, str], ...]:
    return tuple(sorted(dict(items).items()))


@attrs.frozen
class ControlPlaneSettings:
    node_id: str
    failure_policy: FailurePolicy = FailurePolicy.KEEP_LAST_GOOD
    translate_options: TranslateOptions = TranslateOptions()
    hooks: frozenset[Hook] = frozenset({Hook.POST_TRANSLATE_MODIFY})
    mutants: Mutants = Mutants()
    translation_budget: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0.0))
    )
    """Seconds all hook calls of one reconcile may take together; None: no budget, each call
    has only the extension's per-call deadline (and retries)."""
    proxyless_node_id: str | None = None
    """Node id of the proxyless gRPC clients' snapshot (rule 7); None publishes none."""
    gateway_nodes: tuple[tuple[ObjectKey, str], ...] = attrs.field(
        default=(), converter=_node_pairs
    )
    """(Gateway, node id) for each Gateway whose proxies run on a node of their own (rule 8);
    a mapping may be given. Every other Gateway is served under `node_id`."""

    def __attrs_post_init__(self) -> None:
        if self.proxyless_node_id is not None and self.proxyless_node_id == self.node_id:
            raise ValueError("proxyless_node_id must differ from node_id (Envoy's snapshot)")
        for gateway, node in self.gateway_nodes:
            if node in (self.node_id, self.proxyless_node_id):
                raise ValueError(f"Gateway {gateway} needs a node id of its own, not {node!r}")

    @property
    def gateway_node_ids(self) -> tuple[str, ...]:
        """The mapped Gateways' node ids, each once, sorted."""
        return tuple(sorted({node for _, node in self.gateway_nodes}))


@attrs.frozen
class ReconcileResult:
    outcome: Outcome
    snapshot_version: str
    """The version in the cache after this reconcile ("" if the cache holds nothing)."""
    error: str = ""
    hook_seconds: float = 0.0
    """How long the extension hooks took (0 when none ran): what this reconcile waited on."""
    proxyless_version: str = ""
    """The proxyless snapshot's version in the cache after this reconcile ("" if none)."""
    node_versions: tuple[tuple[str, str], ...] = ()
    """(node id, version in the cache after this reconcile) of each mapped Gateway's node."""

    @property
    def published(self) -> bool:
        return self.outcome in (Outcome.PUBLISHED, Outcome.FAIL_OPEN, Outcome.FAILURE_POLICY)


class ControlPlane:
    """Owns the resource store and keeps the cache's snapshots (one per node) in step with it."""

    def __init__(
        self,
        settings: ControlPlaneSettings,
        cache: SnapshotCache,
        extension: ExtensionClient | None = None,
        resources: Resources | None = None,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.extension = extension
        self._clock = clock
        self._lock = threading.Lock()
        self._store = resources if resources is not None else Resources()
        self.last_translation: Translation | None = None
        self.last_result: ReconcileResult | None = None
        self.last_error = ""
        self.history: list[ReconcileResult] = []
        self._process_versions: dict[str, ProcessVersions] = {}
        """Version counters of this process, per node (used only by
        `versions-restart-with-process`)."""
        self._proxyless: ProxylessResources | None = None
        """The proxyless resources of the reconcile under way (rule 7)."""

    @property
    def store(self) -> Resources:
        return self._store

    @property
    def statuses(self) -> Statuses | None:
        return self.last_translation.statuses if self.last_translation else None

    @property
    def published_snapshot(self) -> Snapshot | None:
        return self.cache.get_snapshot(self.settings.node_id)

    def published_snapshot_of(self, node_id: str) -> Snapshot | None:
        """What the cache holds for `node_id` (the default node's or a mapped Gateway's)."""
        return self.cache.get_snapshot(node_id)

    @property
    def gateway_nodes(self) -> Mapping[ObjectKey, str]:
        return dict(self.settings.gateway_nodes)

    @property
    def published_proxyless_snapshot(self) -> Snapshot | None:
        node_id = self.settings.proxyless_node_id
        return self.cache.get_snapshot(node_id) if node_id is not None else None

    def start(self, resources: Resources) -> ReconcileResult:
        """The first reconcile of this control plane: publish what `resources` make."""
        if self.history:
            raise RuntimeError("the control plane has already started; use apply()")
        if Mutant.EMPTY_SNAPSHOT_ON_START in self.settings.mutants:
            # The bug: the node gets an empty snapshot before the first translation, so a proxy
            # that connects meanwhile is told every Listener and Cluster is gone.
            self.cache.set_snapshot(self.settings.node_id, Snapshot.empty())
        if Mutant.PARTIAL_STORE_ON_START in self.settings.mutants:
            # The bug: the first translation runs before the HTTPRoute informer has synced.
            self.apply(attrs.evolve(resources, http_routes=()))
        return self.apply(resources)

    def apply(self, resources: Resources) -> ReconcileResult:
        """Replace the store with `resources` and reconcile."""
        with self._lock:
            self._store = resources
        return self.reconcile()

    def reconcile(self) -> ReconcileResult:
        """Translate the store, run the hooks, and publish what the rules above allow."""
        with self._lock:
            result = self._reconcile()
            self.last_result = result
            self.history.append(result)
            if result.error:
                self.last_error = result.error
            return result

    # ------------------------------------------------------------------ stages

    def _reconcile(self) -> ReconcileResult:
        options = self.settings.translate_options
        if self.settings.gateway_nodes:
            options = attrs.evolve(options, gateway_fleets=self.settings.gateway_nodes)
        translation = translate(self._store, options)
        self.last_translation = translation
        self._proxyless = None
        if self.settings.proxyless_node_id is not None:
            mapped = self.gateway_nodes
            ir = translation.ir
            if mapped:  # rule 7: the default node's Gateways only
                kept = tuple(item for item in ir.listeners if item.gateway not in mapped)
                ir = attrs.evolve(ir, listeners=kept)
            self._proxyless = to_proxyless(ir, self._store)
        translated = translation.xds
        if self.extension is None or not self.settings.hooks:
            return self._publish(translated, Outcome.PUBLISHED)
        passes_before = self.extension.statistics().fail_open_passes
        started = self._clock()
        run = run_hooks(
            translated, self.extension, sorted(self.settings.hooks), budget=self._hook_budget()
        )
        hook_seconds = self._clock() - started
        result = self._after_hooks(self.extension, translated, run, passes_before)
        return attrs.evolve(result, hook_seconds=hook_seconds)

    def _hook_budget(self) -> Budget | None:
        """The budget of this reconcile's hook calls, starting now (rule 2)."""
        seconds = self.settings.translation_budget
        if seconds is None or Mutant.PER_CALL_DEADLINE_ONLY in self.settings.mutants:
            return None  # The mutant: no budget of its own, every call gets its full deadline.
        return Budget.start(seconds, self._clock)

    def _after_hooks(
        self,
        extension: ExtensionClient,
        translated: XdsResources,
        run: HookRun,
        passes_before: int,
    ) -> ReconcileResult:
        """What rule 2 publishes after the hooks ran."""
        problems = self._output_problems(run.resources)
        if run.failure is not None:
            # The failure policy rewrites what the completed hooks made, unless that is invalid.
            base = translated if problems else run.resources
            return self._on_hook_failure(translated, base, run.failure)
        if problems:
            failure = ExtensionError(
                "output", "invalid-output", "; ".join(problems[:5]) + _more(problems, 5)
            )
            return self._on_hook_failure(translated, translated, failure)
        statistics = extension.statistics()
        if statistics.fail_open_passes > passes_before:
            # A hook failed and the client let its inputs through. Fail-open publishes the
            # translation without any of the extension's changes, not a half-modified one.
            return self._publish(translated, Outcome.FAIL_OPEN, str(statistics.last_error))
        return self._publish(run.resources, Outcome.PUBLISHED)

    def _output_problems(self, resources: XdsResources) -> list[str]:
        """What Envoy would refuse in the hooks' output, and every reference it leaves dangling."""
        try:
            snapshot = _snapshot_of(resources)
        except ValueError as clash:  # two different resources of one type and name
            return [str(clash)]
        return envoy_rejections(resources) + self._consistency_errors(snapshot)

    def _on_hook_failure(
        self, translated: XdsResources, base: XdsResources, failure: ExtensionError
    ) -> ReconcileResult:
        """Fail-open publishes the bare translation; fail-closed applies the policy to `base`."""
        error = str(failure)
        if self.extension is not None and self.extension.fail_open:
            return self._publish(translated, Outcome.FAIL_OPEN, error)
        policy = self.settings.failure_policy
        if policy is FailurePolicy.RDS_ERROR:
            return self._publish(with_rds_error(base), Outcome.FAILURE_POLICY, error)
        if policy is FailurePolicy.INLINE_ERROR:
            return self._publish(with_inline_error(base), Outcome.FAILURE_POLICY, error)
        return ReconcileResult(
            Outcome.KEPT_LAST_GOOD,
            self._cached_version(),
            error,
            proxyless_version=self._cached_proxyless_version(),
            node_versions=self._cached_node_versions(),
        )

    def _publish(
        self, resources: XdsResources, outcome: Outcome, error: str = ""
    ) -> ReconcileResult:
        snapshots = self._per_node(_snapshot_of(resources), resources.readiness_listener)
        problems = []
        for node, part in snapshots.items():
            found = self._consistency_errors(part)
            problems += found if node == self.settings.node_id else [f"{node}: {p}" for p in found]
        proxyless = None
        if self._proxyless is not None:
            proxyless = Snapshot.from_messages(self._proxyless.messages())
            problems += [f"proxyless: {item}" for item in self._consistency_errors(proxyless)]
        if problems:
            message = "snapshot not published: " + "; ".join(problems[:5]) + _more(problems, 5)
            return ReconcileResult(
                Outcome.REFUSED_INCONSISTENT,
                self._cached_version(),
                f"{error}; {message}" if error else message,
                proxyless_version=self._cached_proxyless_version(),
                node_versions=self._cached_node_versions(),
            )
        changed = False
        for node, part in snapshots.items():
            # Unchanged content keeps the cached snapshot, and with it the cached versions.
            changed |= self.cache.set_snapshot(node, self._versioned(part, self._counters(node)))
        version = self._cached_version()
        node_id = self.settings.proxyless_node_id
        if proxyless is not None and node_id is not None:
            proxyless = self._versioned(proxyless, self._counters(node_id))
            changed |= self.cache.set_snapshot(node_id, proxyless)
        if not changed and outcome is Outcome.PUBLISHED:
            outcome = Outcome.UNCHANGED
        return ReconcileResult(
            outcome,
            version,
            error,
            proxyless_version=self._cached_proxyless_version(),
            node_versions=self._cached_node_versions(),
        )

    def _per_node(self, snapshot: Snapshot, readiness_listener: str) -> dict[str, Snapshot]:
        """Rule 8: the translation's snapshot cut into each node's."""
        translation = self.last_translation
        assert translation is not None
        node = self.settings.node_id
        return split(snapshot, translation.ir, readiness_listener, node, self.gateway_nodes)

    def _counters(self, node: str) -> ProcessVersions:
        return self._process_versions.setdefault(node, ProcessVersions())

    def _consistency_errors(self, snapshot: Snapshot) -> list[str]:
        if Mutant.DANGLING_REFERENCE in self.settings.mutants:
            return []  # The bug: the publish guard is skipped.
        return consistency_errors(snapshot)

    def _versioned(self, snapshot: Snapshot, counters: ProcessVersions) -> Snapshot:
        """Content-hash versions, unless a versioning mutant labels the snapshot otherwise;
        `counters` are the process counters of the node the snapshot is for."""
        if Mutant.VERSION_FROM_STORE in self.settings.mutants:
            # The bug: versions name the store the translation came from, not its output.
            return store_versioned(snapshot, self._store)
        if Mutant.VERSIONS_RESTART_WITH_PROCESS in self.settings.mutants:
            # The bug: versions are this process's counters; a restart reuses them.
            return counters.label(snapshot)
        return snapshot

    def _cached_version(self) -> str:
        snapshot = self.cache.get_snapshot(self.settings.node_id)
        return snapshot.version if snapshot is not None else ""

    def _cached_node_versions(self) -> tuple[tuple[str, str], ...]:
        return tuple(
            (node, snapshot.version if snapshot is not None else "")
            for node in self.settings.gateway_node_ids
            for snapshot in (self.cache.get_snapshot(node),)
        )

    def _cached_proxyless_version(self) -> str:
        snapshot = self.published_proxyless_snapshot
        return snapshot.version if snapshot is not None else ""


def _snapshot_of(resources: XdsResources) -> Snapshot:
    return Snapshot.from_messages(resources.messages())


def _more(items: Iterable[object], shown: int) -> str:
    extra = len(list(items)) - shown
    return f" (and {extra} more)" if extra > 0 else ""
