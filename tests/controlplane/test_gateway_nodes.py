"""Rule 8 of the runner: a Gateway mapped to a node of its own gets only its Gateway's config.

Real translation, a real cache and (where the extension matters) the real extension server."""

from __future__ import annotations

from typing import Any

import yaml
from envoy.config.listener.v3 import listener_pb2

from sut.controlplane import ControlPlane, ControlPlaneSettings, FailurePolicy, Outcome
from sut.extension import ExtensionClient, ExtensionServer, Fault, Hook
from sut.gatewayapi import ObjectKey, Reason, Resources, load_manifests
from sut.translate import TranslateOptions
from sut.xds import ResourceType, Snapshot, SnapshotCache, consistency_errors

NODE = "node"
SECOND_NODE = "node-gw-2"
NAMESPACE = "default"
SECOND = ObjectKey(NAMESPACE, "gw-2")
OPTIONS = TranslateOptions(readiness_port=0)


def _gateway(name: str, *listeners: tuple[str, int]) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "gatewayClassName": "eg",
            "listeners": [
                {"name": listener, "protocol": "HTTP", "port": port} for listener, port in listeners
            ],
        },
    }


def _route(name: str, prefix: str, service: str, *gateways: str) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "parentRefs": [{"name": gateway} for gateway in gateways],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                    "backendRefs": [{"name": service, "port": 8080}],
                }
            ],
        },
    }


def _store(*, second: bool = True, shared_port: bool = True) -> Resources:
    """gw (port 8080) and gw-2 (8080, or 9090): a route on each and one on both."""
    documents: list[dict[str, Any]] = [_gateway("gw", ("http", 8080))]
    if second:
        documents.append(_gateway("gw-2", ("http", 8080 if shared_port else 9090)))
    for service in ("svc-a", "svc-b", "svc-c"):
        documents.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": service, "namespace": NAMESPACE},
                "spec": {"ports": [{"port": 8080}]},
            }
        )
    documents += [
        _route("only-first", "/a", "svc-a", "gw"),
        _route("only-second", "/b", "svc-b", "gw-2"),
        _route("both", "/c", "svc-c", "gw", "gw-2"),
    ]
    return load_manifests(yaml.safe_dump_all(documents, sort_keys=False))


def _control_plane(
    client: ExtensionClient | None = None,
    nodes: dict[ObjectKey, str] | None = None,
    options: TranslateOptions = OPTIONS,
) -> ControlPlane:
    settings = ControlPlaneSettings(
        node_id=NODE,
        translate_options=options,
        hooks=frozenset({Hook.POST_TRANSLATE_MODIFY}),
        failure_policy=FailurePolicy.KEEP_LAST_GOOD,
        gateway_nodes={SECOND: SECOND_NODE} if nodes is None else nodes,
    )
    return ControlPlane(settings, SnapshotCache(), client)


def _gateway_listeners(snapshot: Snapshot | None) -> set[str]:
    assert snapshot is not None
    return {name for name in snapshot.of_type(ResourceType.LISTENER) if "/" in name}


def _clusters(snapshot: Snapshot | None) -> set[str]:
    assert snapshot is not None
    return {name.split("/")[2] for name in snapshot.of_type(ResourceType.CLUSTER)}


def _ports(snapshot: Snapshot | None) -> set[int]:
    assert snapshot is not None
    ports = set()
    for name, resource in snapshot.of_type(ResourceType.LISTENER).items():
        message = resource.message()
        assert isinstance(message, listener_pb2.Listener)
        if "/" in name:
            ports.add(message.address.socket_address.port_value)
    return ports


def test_each_node_gets_the_closure_of_its_gateways_listeners() -> None:
    plane = _control_plane()
    result = plane.start(_store())
    first, second = plane.published_snapshot, plane.published_snapshot_of(SECOND_NODE)
    assert result.outcome is Outcome.PUBLISHED
    assert _gateway_listeners(first) == {"default/gw/http"}
    assert _gateway_listeners(second) == {"default/gw-2/http"}
    assert _clusters(first) == {"only-first", "both"}
    assert _clusters(second) == {"only-second", "both"}
    for snapshot in (first, second):
        assert snapshot is not None and not consistency_errors(snapshot)
        assert len(snapshot.of_type(ResourceType.LISTENER)) == 2  # the readiness listener too
    assert dict(result.node_versions) == {SECOND_NODE: second.version}  # type: ignore[union-attr]


def test_ports_clash_only_between_gateways_of_one_node() -> None:
    options = TranslateOptions(readiness_port=0, bind_address="127.0.0.1")
    apart = _control_plane(options=options)
    apart.start(_store(shared_port=True))
    assert _ports(apart.published_snapshot) == {8080}
    assert _ports(apart.published_snapshot_of(SECOND_NODE)) == {8080}
    assert Reason.PORT_UNAVAILABLE not in _second_reasons(apart)
    together = _control_plane(nodes={}, options=options)
    together.start(_store(shared_port=True))
    assert Reason.PORT_UNAVAILABLE in _second_reasons(together)
    assert _gateway_listeners(together.published_snapshot) == {"default/gw/http"}


def _second_reasons(plane: ControlPlane) -> set[str]:
    statuses = plane.statuses
    assert statuses is not None
    second = next(item for item in statuses.gateways if item.gateway == SECOND)
    return {c.reason for listener in second.listeners for c in listener.conditions}


def test_an_absent_mapped_gateway_gets_a_snapshot_without_gateway_listeners() -> None:
    plane = _control_plane()
    plane.start(_store(second=False))
    absent = plane.published_snapshot_of(SECOND_NODE)
    assert absent is not None and _gateway_listeners(absent) == set()
    assert len(absent.of_type(ResourceType.LISTENER)) == 1
    created = plane.apply(_store())
    assert _gateway_listeners(plane.published_snapshot_of(SECOND_NODE)) == {"default/gw-2/http"}
    assert created.outcome is Outcome.PUBLISHED
    plane.apply(_store(second=False))
    assert _gateway_listeners(plane.published_snapshot_of(SECOND_NODE)) == set()


def test_publishing_an_equal_snapshot_is_a_no_op_per_node() -> None:
    plane = _control_plane()
    plane.start(_store(shared_port=False))
    before = plane.published_snapshot, plane.published_snapshot_of(SECOND_NODE)
    assert plane.reconcile().outcome is Outcome.UNCHANGED
    assert (plane.published_snapshot, plane.published_snapshot_of(SECOND_NODE)) == before
    # A change of gw-2 alone leaves the default node's snapshot as it was.
    plane.apply(_store(shared_port=True))
    assert plane.published_snapshot == before[0]
    assert plane.published_snapshot_of(SECOND_NODE) != before[1]


def test_without_a_mapping_every_gateway_is_served_under_the_node_id() -> None:
    plane = _control_plane(nodes={})
    plane.start(_store(shared_port=False))
    assert _gateway_listeners(plane.published_snapshot) == {"default/gw/http", "default/gw-2/http"}
    assert plane.published_snapshot_of(SECOND_NODE) is None
    assert plane.last_result is not None and plane.last_result.node_versions == ()


def test_an_extension_failure_hits_every_gateway_alike(
    extension_server: ExtensionServer, extension_client: ExtensionClient
) -> None:
    plane = _control_plane(extension_client)
    plane.start(_store())
    before = plane.published_snapshot, plane.published_snapshot_of(SECOND_NODE)
    extension_server.set_fault(Fault.UNAVAILABLE)
    result = plane.apply(_store(shared_port=False))  # a change for gw-2 only
    assert result.outcome is Outcome.KEPT_LAST_GOOD
    assert (plane.published_snapshot, plane.published_snapshot_of(SECOND_NODE)) == before
    assert dict(result.node_versions) == {SECOND_NODE: before[1].version}  # type: ignore[union-attr]
