"""A starting control plane: its first reconcile publishes the whole store, and nothing before.

A proxy that connects while a control plane starts (after a restart, it still holds the old
control plane's config) must never be told less than the store makes.
"""

from __future__ import annotations

import attrs
import pytest

from sut.controlplane import ControlPlane, ControlPlaneSettings, Outcome, ReconcileResult
from sut.mutants import Mutants
from sut.translate import TranslateOptions, translate
from sut.xds import ResourceType, Snapshot, SnapshotCache
from tests.controlplane.conftest import SITES
from tests.controlplane.manifests import world
from tests.controlplane.proxy import Proxy

NODE = "node"
OPTIONS = TranslateOptions(readiness_port=0)
BASE = world(SITES)
FULL = Snapshot.from_messages(translate(BASE, OPTIONS).xds.messages())
WITHOUT_ROUTES = Snapshot.from_messages(
    translate(attrs.evolve(BASE, http_routes=()), OPTIONS).xds.messages()
)
LDS, RDS, CDS = ResourceType.LISTENER, ResourceType.ROUTE, ResourceType.CLUSTER
MODES = ["delta", "sotw"]


def _started(*mutants: str) -> tuple[ControlPlane, list[Snapshot], ReconcileResult]:
    """A control plane started on BASE, every snapshot it published in order, and the result."""
    cache = SnapshotCache()
    published: list[Snapshot] = []
    cache.watch(NODE, published.append)
    settings = ControlPlaneSettings(
        node_id=NODE, translate_options=OPTIONS, mutants=Mutants.of(mutants)
    )
    control_plane = ControlPlane(settings, cache)
    return control_plane, published, control_plane.start(BASE)


def test_start_publishes_the_translation_of_the_whole_store_once():
    control_plane, published, result = _started()
    assert result.outcome is Outcome.PUBLISHED
    assert result.snapshot_version == FULL.version
    assert published == [FULL]
    assert control_plane.history == [result]
    with pytest.raises(RuntimeError, match="already started"):
        control_plane.start(BASE)


def test_mutant_empty_snapshot_on_start_publishes_an_empty_snapshot_first():
    control_plane, published, result = _started("empty-snapshot-on-start")
    assert published == [Snapshot.empty(), FULL]
    assert result.outcome is Outcome.PUBLISHED and result.snapshot_version == FULL.version
    assert control_plane.history == [result]


def test_mutant_partial_store_on_start_translates_without_httproutes_first():
    assert not WITHOUT_ROUTES.of_type(CDS)  # every route is missing: Envoy answers 404 NR
    assert set(WITHOUT_ROUTES.of_type(LDS)) == set(FULL.of_type(LDS))
    control_plane, published, result = _started("partial-store-on-start")
    assert published == [WITHOUT_ROUTES, FULL]
    assert result.snapshot_version == FULL.version
    assert [r.outcome for r in control_plane.history] == [Outcome.PUBLISHED, Outcome.PUBLISHED]


@pytest.mark.parametrize("mode", MODES)
def test_a_proxy_reconnecting_during_start_keeps_every_route(mode):
    _control_plane, published, _result = _started()
    proxy = Proxy(mode, holding=FULL)
    proxy.connect(published[0])
    assert all(proxy.holds(FULL, kind) for kind in ResourceType)


@pytest.mark.parametrize("mode", MODES)
def test_mutant_empty_snapshot_on_start_tells_a_reconnecting_proxy_everything_is_gone(mode):
    _control_plane, published, _result = _started("empty-snapshot-on-start")
    proxy = Proxy(mode, holding=FULL)
    proxy.connect(published[0])
    assert proxy.config[LDS] == {} and proxy.config[CDS] == {}
    proxy.update(published[-1])
    assert proxy.holds(FULL, LDS) and proxy.holds(FULL, CDS)


@pytest.mark.parametrize("mode", MODES)
def test_mutant_partial_store_on_start_gives_a_reconnecting_proxy_no_routes(mode):
    _control_plane, published, _result = _started("partial-store-on-start")
    proxy = Proxy(mode, holding=FULL)
    proxy.connect(published[0])
    assert proxy.config[CDS] == {}
    assert proxy.holds(WITHOUT_ROUTES, RDS)
    proxy.update(published[-1])
    assert proxy.holds(FULL, RDS) and proxy.holds(FULL, CDS)
