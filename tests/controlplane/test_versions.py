"""Versions the control plane publishes: one version names one content, across reconciles and
across control-plane restarts, so a proxy's "I hold version V" always means the same config.

The output can change while the store does not: here the extension recovers with a new
generation, and its marker lands on every route.
"""

from __future__ import annotations

import pytest

from sut.controlplane import ControlPlane, ControlPlaneSettings
from sut.extension import ExtensionClient, ExtensionServer, Hook
from sut.mutants import Mutants
from sut.translate import TranslateOptions
from sut.xds import ADS_ORDER, ResourceType, Snapshot, SnapshotCache
from tests.controlplane.conftest import SITES
from tests.controlplane.manifests import world
from tests.controlplane.proxy import Proxy

NODE = "node"
OPTIONS = TranslateOptions(readiness_port=0)
HOOKS = frozenset({Hook.POST_ROUTE_MODIFY, Hook.POST_TRANSLATE_MODIFY})
BASE = world(SITES)
RDS = ResourceType.ROUTE
MODES = ["delta", "sotw"]


def _control_plane(client: ExtensionClient, *mutants: str) -> ControlPlane:
    settings = ControlPlaneSettings(
        node_id=NODE, translate_options=OPTIONS, hooks=HOOKS, mutants=Mutants.of(mutants)
    )
    return ControlPlane(settings, SnapshotCache(), client)


def _published(control_plane: ControlPlane) -> Snapshot:
    snapshot = control_plane.published_snapshot
    assert snapshot is not None
    return snapshot


def _changed(before: Snapshot, after: Snapshot) -> list[tuple[ResourceType, str]]:
    """(type, name) of every resource in both snapshots whose content differs."""
    return [
        (kind, name)
        for kind in ADS_ORDER
        for name, resource in after.of_type(kind).items()
        if before.get(kind, name) not in (None, resource)
    ]


def _versions(snapshot: Snapshot, keys: list[tuple[ResourceType, str]]) -> list[str]:
    return [snapshot.by_type[kind][name].version for kind, name in keys]


def _new_generation(
    client: ExtensionClient, server: ExtensionServer, *mutants: str
) -> tuple[Snapshot, Snapshot]:
    """What one control plane publishes before and after the extension's new generation."""
    control_plane = _control_plane(client, *mutants)
    control_plane.start(BASE)
    before = _published(control_plane)
    server.set_generation(2)
    assert control_plane.reconcile().published
    return before, _published(control_plane)


def _restarted(
    client: ExtensionClient, server: ExtensionServer, *mutants: str
) -> tuple[Snapshot, Snapshot, ControlPlane]:
    """What a control plane publishes, and what a restarted one (a new process on the same
    store) publishes once the extension has a new generation; and the restarted one."""
    first = _control_plane(client, *mutants)
    first.start(BASE)
    server.set_generation(2)
    second = _control_plane(client, *mutants)
    second.start(BASE)
    return _published(first), _published(second), second


def test_new_output_of_an_unchanged_store_gets_new_versions(
    extension_client: ExtensionClient, extension_server: ExtensionServer
) -> None:
    before, after = _new_generation(extension_client, extension_server)
    changed = _changed(before, after)
    assert changed and {kind for kind, _name in changed} == {RDS}
    assert all(
        a != b for a, b in zip(_versions(before, changed), _versions(after, changed), strict=True)
    )
    assert after.type_version(RDS) != before.type_version(RDS)


def test_mutant_version_from_store_publishes_new_output_under_old_versions(
    extension_client: ExtensionClient, extension_server: ExtensionServer
) -> None:
    before, after = _new_generation(extension_client, extension_server, "version-from-store")
    changed = _changed(before, after)
    assert changed and after != before
    assert _versions(after, changed) == _versions(before, changed)
    assert after.type_version(RDS) == before.type_version(RDS)
    assert after.version == before.version


@pytest.mark.parametrize("mutants", [(), ("version-from-store",)], ids=["default", "mutant"])
@pytest.mark.parametrize("mode", MODES)
def test_a_connected_proxy_gets_the_new_output(
    extension_client: ExtensionClient,
    extension_server: ExtensionServer,
    mode: str,
    mutants: tuple[str, ...],
) -> None:
    before, after = _new_generation(extension_client, extension_server, *mutants)
    proxy = Proxy(mode)
    proxy.connect(before)
    assert proxy.holds(before, RDS)
    proxy.update(after)
    # The mutant's stream compares versions, so new routes under old versions never go out.
    assert proxy.holds(after, RDS) is not bool(mutants)


def test_a_restarted_control_plane_gives_other_content_other_versions(
    extension_client: ExtensionClient, extension_server: ExtensionServer
) -> None:
    old, new, _control_plane = _restarted(extension_client, extension_server)
    changed = _changed(old, new)
    assert changed
    assert all(
        a != b for a, b in zip(_versions(old, changed), _versions(new, changed), strict=True)
    )
    assert new.type_version(RDS) != old.type_version(RDS)


def test_mutant_versions_restart_with_process_reuses_versions_for_other_content(
    extension_client: ExtensionClient, extension_server: ExtensionServer
) -> None:
    old, new, restarted = _restarted(
        extension_client, extension_server, "versions-restart-with-process"
    )
    changed = _changed(old, new)
    assert changed
    assert set(_versions(old, changed)) == set(_versions(new, changed)) == {"1"}
    assert new.type_version(RDS) == old.type_version(RDS)  # SotW version_info collides too
    # Within one process the counters are consistent: new content, next number.
    extension_server.set_generation(3)
    assert restarted.reconcile().published
    assert set(_versions(_published(restarted), changed)) == {"2"}
    unchanged = [(kind, name) for kind in ADS_ORDER for name in new.of_type(kind)]
    unchanged = [key for key in unchanged if key not in changed]
    assert set(_versions(_published(restarted), unchanged)) == {"1"}


@pytest.mark.parametrize(
    "mutants", [(), ("versions-restart-with-process",)], ids=["default", "mutant"]
)
def test_a_delta_proxy_reconnecting_to_a_restarted_control_plane_gets_the_new_output(
    extension_client: ExtensionClient,
    extension_server: ExtensionServer,
    mutants: tuple[str, ...],
) -> None:
    old, new, _control_plane = _restarted(extension_client, extension_server, *mutants)
    proxy = Proxy("delta", holding=old)  # reports old's versions in initial_resource_versions
    proxy.connect(new)
    assert proxy.holds(new, RDS) is not bool(mutants)
