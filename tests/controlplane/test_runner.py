"""The runner with the real extension server over gRPC and a real cache, but no Envoy."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

import attrs
import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf.message import Message

import sut.controlplane.runner as runner_module
from sut.controlplane import (
    ControlPlane,
    ControlPlaneSettings,
    FailurePolicy,
    Outcome,
    error_route_configuration,
)
from sut.extension import (
    MARKER_HEADER,
    MISSING_ROUTE_CONFIGURATION,
    ExtensionClient,
    ExtensionServer,
    Fault,
    Hook,
    marker_value,
)
from sut.gatewayapi import Resources
from sut.mutants import Mutants
from sut.translate import TranslateOptions, Translation, translate
from sut.xds import ResourceType, Snapshot, SnapshotCache, consistency_errors
from tests.controlplane.conftest import ONE, SITES
from tests.controlplane.manifests import world

_M = TypeVar("_M", bound=Message)
NODE = "node"
OPTIONS = TranslateOptions(readiness_port=0)
HOOKS = frozenset({Hook.POST_ROUTE_MODIFY, Hook.POST_TRANSLATE_MODIFY})
BASE = world(SITES)
CHANGED = world((ONE.changed("/v2"), *SITES[1:]))
FAULTS = [
    Fault.UNAVAILABLE,
    Fault.HANG,
    Fault.INTERNAL,
    Fault.INVALID_REJECT,
    Fault.INVALID_DANGLING,
]


def _control_plane(
    client: ExtensionClient | None,
    policy: FailurePolicy = FailurePolicy.KEEP_LAST_GOOD,
    mutants: tuple[str, ...] = (),
    hooks: frozenset[Hook] = HOOKS,
) -> ControlPlane:
    settings = ControlPlaneSettings(
        node_id=NODE,
        failure_policy=policy,
        translate_options=OPTIONS,
        hooks=hooks,
        mutants=Mutants.of(mutants),
    )
    return ControlPlane(settings, SnapshotCache(), client)


def _as(kind: type[_M], message: Message) -> _M:
    assert isinstance(message, kind)
    return message


def _route_configurations(snapshot: Snapshot | None) -> dict[str, route_pb2.RouteConfiguration]:
    assert snapshot is not None
    return {
        name: _as(route_pb2.RouteConfiguration, resource.message())
        for name, resource in snapshot.of_type(ResourceType.ROUTE).items()
    }


def _markers(snapshot: Snapshot | None) -> set[str]:
    """Every marker value on any route of the snapshot."""
    return {
        option.header.value
        for config in _route_configurations(snapshot).values()
        for host in config.virtual_hosts
        for route in host.routes
        for option in route.response_headers_to_add
        if option.header.key == MARKER_HEADER
    }


def _prefixes(snapshot: Snapshot | None) -> set[str]:
    return {
        route.match.path_separated_prefix or route.match.prefix
        for config in _route_configurations(snapshot).values()
        for host in config.virtual_hosts
        for route in host.routes
    }


def _listeners(snapshot: Snapshot | None) -> dict[str, listener_pb2.Listener]:
    assert snapshot is not None
    return {
        name: _as(listener_pb2.Listener, resource.message())
        for name, resource in snapshot.of_type(ResourceType.LISTENER).items()
    }


@pytest.fixture
def fail(extension_server: ExtensionServer) -> Iterator[ExtensionServer]:
    """The server; a test sets its fault. Hangs are woken when the test ends."""
    yield extension_server
    extension_server.set_fault(Fault.HEALTHY)


def test_publish_then_unchanged(extension_client: ExtensionClient) -> None:
    control_plane = _control_plane(extension_client)
    first = control_plane.apply(BASE)
    assert first.outcome is Outcome.PUBLISHED and first.published and not first.error
    snapshot = control_plane.published_snapshot
    assert snapshot is not None and first.snapshot_version == snapshot.version
    assert _markers(snapshot) == {marker_value(1)}
    again = control_plane.reconcile()
    assert again.outcome is Outcome.UNCHANGED and not again.published
    assert again.snapshot_version == first.snapshot_version
    changed = control_plane.apply(CHANGED)
    assert changed.outcome is Outcome.PUBLISHED
    assert changed.snapshot_version != first.snapshot_version
    assert "/v2" in _prefixes(control_plane.published_snapshot)
    assert [r.outcome for r in control_plane.history] == [
        Outcome.PUBLISHED,
        Outcome.UNCHANGED,
        Outcome.PUBLISHED,
    ]


def test_without_an_extension_the_translation_is_published() -> None:
    control_plane = _control_plane(None)
    result = control_plane.apply(BASE)
    assert result.outcome is Outcome.PUBLISHED
    snapshot = control_plane.published_snapshot
    expected = Snapshot.from_messages(translate(BASE, OPTIONS).xds.messages())
    assert snapshot == expected
    assert _markers(snapshot) == set()


@pytest.mark.parametrize("fault", FAULTS)
def test_keep_last_good_publishes_nothing_on_any_fault(
    extension_client: ExtensionClient, fail: ExtensionServer, fault: Fault
) -> None:
    control_plane = _control_plane(extension_client)
    good = control_plane.apply(BASE)
    fail.set_fault(fault)
    kept = control_plane.apply(CHANGED)
    assert kept.outcome is Outcome.KEPT_LAST_GOOD and not kept.published
    assert kept.snapshot_version == good.snapshot_version
    assert kept.error and control_plane.last_error == kept.error
    assert control_plane.published_snapshot is not None
    assert control_plane.published_snapshot.version == good.snapshot_version
    assert "/v2" not in _prefixes(control_plane.published_snapshot)
    # Recovery publishes the current store with the new generation's marker.
    fail.set_generation(2)
    fail.set_fault(Fault.HEALTHY)
    recovered = control_plane.reconcile()
    assert recovered.outcome is Outcome.PUBLISHED
    assert "/v2" in _prefixes(control_plane.published_snapshot)
    assert _markers(control_plane.published_snapshot) == {marker_value(2)}


def test_keep_last_good_before_anything_was_published_keeps_nothing(
    extension_client: ExtensionClient, fail: ExtensionServer
) -> None:
    fail.set_fault(Fault.INTERNAL)
    control_plane = _control_plane(extension_client)
    result = control_plane.apply(BASE)
    assert result.outcome is Outcome.KEPT_LAST_GOOD
    assert result.snapshot_version == ""
    assert control_plane.published_snapshot is None


@pytest.mark.parametrize("fault", FAULTS)
def test_rds_error_rewrites_every_route_configuration_on_any_fault(
    extension_client: ExtensionClient, fail: ExtensionServer, fault: Fault
) -> None:
    control_plane = _control_plane(extension_client, FailurePolicy.RDS_ERROR)
    good = control_plane.apply(BASE)
    fail.set_fault(fault)
    result = control_plane.apply(CHANGED)
    assert result.outcome is Outcome.FAILURE_POLICY and result.published and result.error
    snapshot = control_plane.published_snapshot
    assert snapshot is not None and snapshot.version == result.snapshot_version
    configs = _route_configurations(snapshot)
    assert set(configs) == set(
        _route_configurations(Snapshot.from_messages(translate(CHANGED, OPTIONS).xds.messages()))
    )
    assert all(config == error_route_configuration(name) for name, config in configs.items())
    assert _listeners(snapshot) == _listeners(
        Snapshot.from_messages(translate(BASE, OPTIONS).xds.messages())
    )
    assert not consistency_errors(snapshot)
    assert result.snapshot_version != good.snapshot_version


@pytest.mark.parametrize("fault", FAULTS)
def test_inline_error_rewrites_every_hcm_on_any_fault(
    extension_client: ExtensionClient, fail: ExtensionServer, fault: Fault
) -> None:
    control_plane = _control_plane(extension_client, FailurePolicy.INLINE_ERROR)
    control_plane.apply(BASE)
    fail.set_fault(fault)
    result = control_plane.apply(CHANGED)
    assert result.outcome is Outcome.FAILURE_POLICY and result.error
    snapshot = control_plane.published_snapshot
    readiness = translate(CHANGED, OPTIONS).xds.readiness_listener
    listeners = _listeners(snapshot)
    assert listeners[readiness] == translate(CHANGED, OPTIONS).xds.listener(readiness)
    for name, listener in listeners.items():
        if name == readiness:
            continue
        for chain in listener.filter_chains:
            manager = hcm_pb2.HttpConnectionManager()
            assert chain.filters[0].typed_config.Unpack(manager)
            assert not manager.HasField("rds")
            assert manager.route_config == error_route_configuration()
    assert not consistency_errors(snapshot)  # type: ignore[arg-type]


def test_a_failed_post_translate_leaves_the_route_hooks_work_to_the_policy(
    extension_client: ExtensionClient, fail: ExtensionServer
) -> None:
    """inline-error keeps the RouteConfigurations PostRouteModify marked, so a failure of
    PostTranslateModify alone changes no RouteConfiguration (as in Envoy Gateway)."""
    control_plane = _control_plane(extension_client, FailurePolicy.INLINE_ERROR)
    control_plane.apply(BASE)
    before = _route_configurations(control_plane.published_snapshot)
    fail.set_fault(Fault.INTERNAL, Hook.POST_TRANSLATE_MODIFY)
    assert control_plane.reconcile().outcome is Outcome.FAILURE_POLICY
    assert _route_configurations(control_plane.published_snapshot) == before


@pytest.mark.parametrize("fault", [Fault.INVALID_REJECT, Fault.INVALID_DANGLING])
def test_invalid_output_on_a_later_hook_makes_the_policy_start_from_the_translation(
    extension_client: ExtensionClient, fail: ExtensionServer, fault: Fault
) -> None:
    control_plane = _control_plane(extension_client, FailurePolicy.INLINE_ERROR)
    fail.set_fault(fault, Hook.POST_TRANSLATE_MODIFY)
    result = control_plane.apply(BASE)
    assert result.outcome is Outcome.FAILURE_POLICY
    assert "invalid-output" in result.error
    # Nothing of the extension's invalid answer is in the snapshot, markers included.
    assert _route_configurations(control_plane.published_snapshot) == _route_configurations(
        Snapshot.from_messages(translate(BASE, OPTIONS).xds.messages())
    )


@pytest.mark.parametrize("fault", [Fault.UNAVAILABLE, Fault.HANG, Fault.INTERNAL])
def test_fail_open_publishes_the_translation_without_the_marker(
    extension_client: ExtensionClient, fail: ExtensionServer, fault: Fault
) -> None:
    # One hook, so a hang costs one deadline.
    control_plane = _control_plane(
        extension_client, FailurePolicy.RDS_ERROR, hooks=frozenset({Hook.POST_TRANSLATE_MODIFY})
    )
    control_plane.apply(BASE)
    extension_client.set_fail_open(True)
    fail.set_fault(fault)
    result = control_plane.apply(CHANGED)
    assert result.outcome is Outcome.FAIL_OPEN and result.published
    kind = {Fault.UNAVAILABLE: "unavailable", Fault.HANG: "deadline", Fault.INTERNAL: "INTERNAL"}
    assert kind[fault] in result.error
    snapshot = control_plane.published_snapshot
    assert snapshot == Snapshot.from_messages(translate(CHANGED, OPTIONS).xds.messages())
    assert _markers(snapshot) == set()


@pytest.mark.parametrize("fault", [Fault.INVALID_REJECT, Fault.INVALID_DANGLING])
def test_fail_open_with_invalid_output_publishes_the_bare_translation(
    extension_client: ExtensionClient, fail: ExtensionServer, fault: Fault
) -> None:
    extension_client.set_fail_open(True)
    fail.set_fault(fault)
    control_plane = _control_plane(extension_client, FailurePolicy.INLINE_ERROR)
    result = control_plane.apply(BASE)
    assert result.outcome is Outcome.FAIL_OPEN
    assert "invalid-output" in result.error
    assert control_plane.published_snapshot == Snapshot.from_messages(
        translate(BASE, OPTIONS).xds.messages()
    )


@pytest.mark.parametrize(
    "policy", [FailurePolicy.KEEP_LAST_GOOD, FailurePolicy.RDS_ERROR, FailurePolicy.INLINE_ERROR]
)
def test_dangling_output_is_never_published(
    extension_client: ExtensionClient, fail: ExtensionServer, policy: FailurePolicy
) -> None:
    control_plane = _control_plane(extension_client, policy)
    control_plane.apply(BASE)
    fail.set_fault(Fault.INVALID_DANGLING, Hook.POST_TRANSLATE_MODIFY)
    result = control_plane.apply(CHANGED)
    assert "which the snapshot does not contain" in result.error
    snapshot = control_plane.published_snapshot
    assert snapshot is not None and not consistency_errors(snapshot)
    assert MISSING_ROUTE_CONFIGURATION not in str(
        result
    )  # the PostTranslate fault drops, not renames


def test_the_dangling_reference_mutant_publishes_the_dangling_output(
    extension_client: ExtensionClient, fail: ExtensionServer
) -> None:
    control_plane = _control_plane(extension_client, mutants=("dangling-reference",))
    fail.set_fault(Fault.INVALID_DANGLING, Hook.POST_TRANSLATE_MODIFY)
    result = control_plane.apply(BASE)
    assert result.outcome is Outcome.PUBLISHED
    snapshot = control_plane.published_snapshot
    assert snapshot is not None
    problems = consistency_errors(snapshot)
    assert problems and all(
        "RouteConfiguration" in problem or "RDS" in problem for problem in problems
    )


def _dangling_translate(
    resources: Resources, options: TranslateOptions | None = None
) -> Translation:
    """A translation bug: a listener names a RouteConfiguration the translation lacks."""
    translation = translate(resources, options)
    xds = attrs.evolve(
        translation.xds, route_configurations=translation.xds.route_configurations[1:]
    )
    return attrs.evolve(translation, xds=xds)


@pytest.mark.parametrize("with_extension", [False, True])
def test_an_inconsistent_translation_is_refused(
    extension_client: ExtensionClient,
    fail: ExtensionServer,
    monkeypatch: pytest.MonkeyPatch,
    with_extension: bool,
) -> None:
    client = extension_client if with_extension else None
    if with_extension:
        extension_client.set_fail_open(True)  # so the bare (broken) translation is what remains
    control_plane = _control_plane(client)
    good = control_plane.apply(BASE)
    monkeypatch.setattr(runner_module, "translate", _dangling_translate)
    refused = control_plane.apply(CHANGED)
    assert refused.outcome is Outcome.REFUSED_INCONSISTENT and not refused.published
    assert "snapshot not published" in refused.error
    assert refused.snapshot_version == good.snapshot_version
    assert control_plane.published_snapshot is not None
    assert control_plane.published_snapshot.version == good.snapshot_version


def test_the_dangling_reference_mutant_publishes_an_inconsistent_translation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    control_plane = _control_plane(None, mutants=("dangling-reference",))
    monkeypatch.setattr(runner_module, "translate", _dangling_translate)
    assert control_plane.apply(BASE).outcome is Outcome.PUBLISHED
    assert consistency_errors(control_plane.published_snapshot)  # type: ignore[arg-type]
