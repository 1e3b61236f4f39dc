"""Attachment and status rules of the Gateway API spec, one table row per rule."""

from __future__ import annotations

from typing import Any

import pytest

from sut.gatewayapi import Reason, RouteGroupKind, Statuses
from sut.translate import TranslateOptions, build_ir
from tests.translate.worlds import (
    backend,
    gateway,
    listener,
    namespace,
    prefix,
    reference_grant,
    route,
    service,
    tls_secret,
    world,
)

HTTP_ROUTE = RouteGroupKind("HTTPRoute")


def statuses(*documents: dict[str, Any], options: TranslateOptions | None = None) -> Statuses:
    return build_ir(world(*documents), options)[1]


def parent_conditions(result: Statuses, name: str = "app", ns: str = "default") -> dict[str, str]:
    status = result.http_route(ns, name) or result.http_route("infra", name)
    assert status is not None
    assert len(status.parents) == 1, status
    return {c.type: f"{c.status}/{c.reason}" for c in status.parents[0].conditions}


ATTACHMENT = [
    pytest.param(
        [gateway([listener()]), route("app", namespace="infra")],
        "True/Accepted",
        id="same-namespace-allowed-by-default",
    ),
    pytest.param(
        [gateway([listener()]), route("app")],
        "False/NotAllowedByListeners",
        id="from-same-refuses-other-namespace",
    ),
    pytest.param(
        [gateway([listener(allowed_routes={"namespaces": {"from": "All"}})]), route("app")],
        "True/Accepted",
        id="from-all",
    ),
    pytest.param(
        [
            namespace("default", team="shop"),
            gateway(
                [
                    listener(
                        allowed_routes={
                            "namespaces": {
                                "from": "Selector",
                                "selector": {"matchLabels": {"team": "shop"}},
                            }
                        }
                    )
                ]
            ),
            route("app"),
        ],
        "True/Accepted",
        id="selector-match-labels",
    ),
    pytest.param(
        [
            namespace("default", team="blog"),
            gateway(
                [
                    listener(
                        allowed_routes={
                            "namespaces": {
                                "from": "Selector",
                                "selector": {"matchLabels": {"team": "shop"}},
                            }
                        }
                    )
                ]
            ),
            route("app"),
        ],
        "False/NotAllowedByListeners",
        id="selector-mismatch",
    ),
    pytest.param(
        [
            namespace("default", env="prod"),
            gateway(
                [
                    listener(
                        allowed_routes={
                            "namespaces": {
                                "from": "Selector",
                                "selector": {
                                    "matchExpressions": [
                                        {"key": "env", "operator": "In", "values": ["prod", "qa"]},
                                        {"key": "legacy", "operator": "DoesNotExist"},
                                    ]
                                },
                            }
                        }
                    )
                ]
            ),
            route("app"),
        ],
        "True/Accepted",
        id="selector-match-expressions",
    ),
    pytest.param(
        [
            gateway(
                [
                    listener(
                        allowed_routes={
                            "namespaces": {
                                "from": "Selector",
                                "selector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": "default"}
                                },
                            }
                        }
                    )
                ]
            ),
            route("app"),
        ],
        "True/Accepted",
        id="selector-on-automatic-namespace-name-label",
    ),
    pytest.param(
        [
            gateway(
                [
                    listener(
                        allowed_routes={
                            "namespaces": {"from": "All"},
                            "kinds": [{"kind": "GRPCRoute"}],
                        }
                    )
                ]
            ),
            route("app"),
        ],
        "False/NotAllowedByListeners",
        id="kinds-exclude-httproute",
    ),
    pytest.param(
        [
            gateway([listener(allowed_routes={"namespaces": {"from": "All"}})]),
            route("app", parents=[{"name": "eg", "namespace": "infra", "sectionName": "nope"}]),
        ],
        "False/NoMatchingParent",
        id="section-name-matches-nothing",
    ),
    pytest.param(
        [
            gateway([listener(allowed_routes={"namespaces": {"from": "All"}})]),
            route("app", parents=[{"name": "eg", "namespace": "infra", "port": 8080}]),
        ],
        "False/NoMatchingParent",
        id="port-matches-nothing",
    ),
    pytest.param(
        [
            gateway([listener(allowed_routes={"namespaces": {"from": "All"}})]),
            route(
                "app",
                parents=[{"name": "eg", "namespace": "infra", "sectionName": "http", "port": 81}],
            ),
        ],
        "False/NoMatchingParent",
        id="section-name-and-port-must-both-match",
    ),
    pytest.param(
        [
            gateway(
                [
                    listener("a", 80, allowed_routes={"namespaces": {"from": "All"}}),
                    listener("b", 81, allowed_routes={"namespaces": {"from": "All"}}),
                ]
            ),
            route("app", parents=[{"name": "eg", "namespace": "infra", "port": 81}]),
        ],
        "True/Accepted",
        id="port-selects-listener",
    ),
    pytest.param(
        [
            gateway(
                [listener(hostname="*.example.com", allowed_routes={"namespaces": {"from": "All"}})]
            ),
            route("app", hostnames=["foo.example.org"]),
        ],
        "False/NoMatchingListenerHostname",
        id="hostname-disjoint",
    ),
    pytest.param(
        [
            gateway(
                [listener(hostname="*.example.com", allowed_routes={"namespaces": {"from": "All"}})]
            ),
            route("app", hostnames=["example.com"]),
        ],
        "False/NoMatchingListenerHostname",
        id="wildcard-does-not-cover-apex",
    ),
    pytest.param(
        [
            gateway(
                [listener(hostname="*.example.com", allowed_routes={"namespaces": {"from": "All"}})]
            ),
            route("app", hostnames=["a.b.example.com", "other.org"]),
        ],
        "True/Accepted",
        id="wildcard-covers-several-labels",
    ),
    pytest.param(
        [
            gateway(
                [
                    listener(
                        hostname="foo.example.com", allowed_routes={"namespaces": {"from": "All"}}
                    )
                ]
            ),
            route("app", hostnames=["*.example.com"]),
        ],
        "True/Accepted",
        id="route-wildcard-covers-listener",
    ),
    pytest.param(
        [
            gateway([listener(allowed_routes={"namespaces": {"from": "All"}})]),
            route(
                "app",
                parents=[{"name": "eg", "namespace": "infra"}],
                rules=[{"filters": [{"type": "CORS", "cors": {"allowOrigins": ["*"]}}]}],
            ),
        ],
        "False/UnsupportedValue",
        id="every-rule-unsupported",
    ),
]


@pytest.mark.parametrize(("documents", "accepted"), ATTACHMENT)
def test_route_acceptance(documents: list[dict[str, Any]], accepted: str) -> None:
    assert parent_conditions(statuses(*documents))["Accepted"] == accepted


def test_parent_refs_to_other_controllers_get_no_status() -> None:
    result = statuses(
        gateway([listener()], gateway_class="other"),
        route("app", namespace="infra"),
        options=TranslateOptions(gateway_class="eg"),
    )
    status = result.http_route("default", "app") or result.http_route("infra", "app")
    assert status is not None and status.parents == ()
    assert result.gateway("infra", "eg") is None


BACKENDS = [
    pytest.param([service("web")], [backend("web")], "True/ResolvedRefs", id="resolved"),
    pytest.param([], [backend("web")], "False/BackendNotFound", id="missing-service"),
    pytest.param(
        [service("web")], [backend("web", port=9999)], "False/BackendNotFound", id="missing-port"
    ),
    pytest.param(
        [service("web")],
        [backend("web", kind="ServiceImport", group="multicluster.x-k8s.io")],
        "False/InvalidKind",
        id="unsupported-kind",
    ),
    pytest.param(
        [service("web", namespace="other")],
        [backend("web", namespace="other")],
        "False/RefNotPermitted",
        id="cross-namespace-without-grant",
    ),
    pytest.param(
        [
            service("web", namespace="other"),
            reference_grant("other", "HTTPRoute", "default", "Service"),
        ],
        [backend("web", namespace="other")],
        "True/ResolvedRefs",
        id="cross-namespace-with-grant",
    ),
    pytest.param(
        [
            service("web", namespace="other"),
            reference_grant("other", "HTTPRoute", "default", "Service", to_name="api"),
        ],
        [backend("web", namespace="other")],
        "False/RefNotPermitted",
        id="grant-for-another-name",
    ),
    pytest.param(
        [
            service("web", namespace="other"),
            reference_grant("other", "Gateway", "default", "Service"),
        ],
        [backend("web", namespace="other")],
        "False/RefNotPermitted",
        id="grant-for-another-kind",
    ),
    pytest.param(
        [reference_grant("other", "HTTPRoute", "default", "Service")],
        [backend("web", namespace="other")],
        "False/BackendNotFound",
        id="granted-but-missing",
    ),
]


@pytest.mark.parametrize(("extra", "backends", "resolved"), BACKENDS)
def test_backend_resolution(
    extra: list[dict[str, Any]], backends: list[dict[str, Any]], resolved: str
) -> None:
    result = statuses(
        gateway([listener(allowed_routes={"namespaces": {"from": "All"}})]),
        *extra,
        route("app", rules=[{"backendRefs": backends}]),
    )
    conditions = parent_conditions(result)
    assert conditions["ResolvedRefs"] == resolved
    assert conditions["Accepted"] == "True/Accepted"  # invalid backends do not detach a route


def https_gateway(certificates: list[dict[str, Any]], hostname: str | None = None) -> dict:
    return gateway([listener("https", 443, "HTTPS", hostname=hostname, certificates=certificates)])


CERTIFICATES = [
    pytest.param([tls_secret("cert")], [{"name": "cert"}], "True/ResolvedRefs", True, id="valid"),
    pytest.param([], [{"name": "cert"}], "False/InvalidCertificateRef", False, id="missing"),
    pytest.param(
        [tls_secret("cert", valid=False)],
        [{"name": "cert"}],
        "False/InvalidCertificateRef",
        False,
        id="malformed",
    ),
    pytest.param(
        [tls_secret("cert")],
        [{"name": "cert", "kind": "ConfigMap"}],
        "False/InvalidCertificateRef",
        False,
        id="unsupported-kind",
    ),
    pytest.param(
        [tls_secret("cert", namespace="certs")],
        [{"name": "cert", "namespace": "certs"}],
        "False/RefNotPermitted",
        False,
        id="cross-namespace-without-grant",
    ),
    pytest.param(
        [
            tls_secret("cert", namespace="certs"),
            reference_grant("certs", "Gateway", "infra", "Secret"),
        ],
        [{"name": "cert", "namespace": "certs"}],
        "True/ResolvedRefs",
        True,
        id="cross-namespace-with-grant",
    ),
    pytest.param(
        [tls_secret("cert")],
        [{"name": "cert"}, {"name": "gone"}],
        "False/InvalidCertificateRef",
        True,
        id="one-of-two-invalid-still-serves",
    ),
]


@pytest.mark.parametrize(("extra", "refs", "resolved", "programmed"), CERTIFICATES)
def test_listener_certificates(
    extra: list[dict[str, Any]], refs: list[dict[str, Any]], resolved: str, programmed: bool
) -> None:
    ir, result = build_ir(world(https_gateway(refs), *extra))
    gateway_status = result.gateway("infra", "eg")
    assert gateway_status is not None
    listener_status = gateway_status.listener("https")
    assert listener_status is not None
    refs_condition = listener_status.condition(Reason.RESOLVED_REFS)
    assert refs_condition is not None
    assert f"{refs_condition.status}/{refs_condition.reason}" == resolved
    programmed_condition = listener_status.condition(Reason.PROGRAMMED)
    assert programmed_condition is not None and programmed_condition.is_true == programmed
    assert bool(ir.listeners) == programmed


def test_invalid_route_kinds_and_supported_kinds() -> None:
    result = statuses(
        gateway(
            [
                listener(
                    allowed_routes={
                        "kinds": [{"kind": "HTTPRoute"}, {"kind": "TCPRoute"}],
                    }
                )
            ]
        )
    )
    status = result.gateway("infra", "eg")
    assert status is not None
    http = status.listener("http")
    assert http is not None
    assert http.supported_kinds == (HTTP_ROUTE,)
    condition = http.condition(Reason.RESOLVED_REFS)
    assert condition is not None and condition.reason == "InvalidRouteKinds"


def test_unsupported_protocol_and_protocol_conflict() -> None:
    result = statuses(
        gateway(
            [
                listener("tcp", 9000, "TCP"),
                listener("a", 80, "HTTP"),
                listener("b", 80, "HTTPS", certificates=[{"name": "cert"}]),
                listener("ok", 8080, "HTTP"),
            ]
        ),
        tls_secret("cert"),
    )
    status = result.gateway("infra", "eg")
    assert status is not None
    reasons = {
        item.name: (item.condition(Reason.ACCEPTED).reason, item.condition(Reason.CONFLICTED))  # type: ignore[union-attr]
        for item in status.listeners
    }
    assert reasons["tcp"][0] == "UnsupportedProtocol"
    assert reasons["a"][0] == "ProtocolConflict" and reasons["a"][1] is not None
    assert reasons["b"][0] == "ProtocolConflict"
    assert reasons["ok"] == ("Accepted", None)
    accepted = status.condition(Reason.ACCEPTED)
    assert accepted is not None and accepted.is_true and accepted.reason == "ListenersNotValid"


def test_attached_routes_count_only_routes_accepted_on_the_listener() -> None:
    """ListenerStatus.AttachedRoutes (v1.5): "the number of Routes with the Accepted condition
    set to "True" that have been attached to this Listener. Routes with any other value for the
    Accepted condition MUST NOT be included in this count." """
    result = statuses(
        gateway(
            [
                listener(
                    "a",
                    80,
                    hostname="a.example.com",
                    allowed_routes={"namespaces": {"from": "All"}},
                ),
                listener("b", 81),
                listener(
                    "wild",
                    82,
                    hostname="*.example.com",
                    allowed_routes={"namespaces": {"from": "All"}},
                ),
            ]
        ),
        # selected by every listener; its hostname intersects "wild" only ("b" refuses default/)
        route("one", hostnames=["b.example.com"]),
        route("two", namespace="infra"),  # no hostnames: accepted on all three
        route("three", namespace="infra", parents=[{"name": "eg", "sectionName": "b"}]),
        # selected by "a" but no hostname intersects: Accepted=False, counted nowhere
        route(
            "four",
            namespace="infra",
            hostnames=["other.test"],
            parents=[{"name": "eg", "sectionName": "a"}],
        ),
        # every rule dropped: Accepted=False UnsupportedValue, counted nowhere
        route(
            "five",
            namespace="infra",
            parents=[{"name": "eg", "sectionName": "b"}],
            rules=[{"timeouts": {"request": "1s"}}],
        ),
    )
    status = result.gateway("infra", "eg")
    assert status is not None
    counts = {item.name: item.attached_routes for item in status.listeners}
    assert counts == {"a": 1, "b": 2, "wild": 2}
    assert parent_conditions(result, "four")["Accepted"] == "False/NoMatchingListenerHostname"
    assert parent_conditions(result, "five")["Accepted"] == "False/UnsupportedValue"


def test_attached_routes_are_counted_on_listeners_that_are_not_accepted() -> None:
    """ "the AttachedRoutes field count MUST be set for Listeners, even if the Accepted condition
    of an individual Listener is set to "False"" (here: ProtocolConflict on port 80)."""
    result = statuses(
        gateway(
            [
                listener("plain", 80),
                listener("tls", 80, "HTTPS", hostname="x.test", certificates=[{"name": "cert"}]),
            ]
        ),
        tls_secret("cert"),
        route("app", namespace="infra", parents=[{"name": "eg", "sectionName": "plain"}]),
    )
    status = result.gateway("infra", "eg")
    assert status is not None
    plain = status.listener("plain")
    assert plain is not None
    accepted = plain.condition(Reason.ACCEPTED)
    assert accepted is not None and accepted.reason == "ProtocolConflict"
    assert plain.attached_routes == 1
    assert parent_conditions(result, "app", "infra")["Accepted"] == "True/Accepted"


def test_port_unavailable_between_gateways_unless_ports_are_os_chosen() -> None:
    documents = (
        gateway([listener()], name="first", creationTimestamp="2024-01-01T00:00:00Z"),
        gateway([listener()], name="second", creationTimestamp="2024-02-01T00:00:00Z"),
    )
    shared = statuses(*documents)
    second = shared.gateway("infra", "second")
    assert second is not None
    accepted = second.listeners[0].condition(Reason.ACCEPTED)
    assert accepted is not None and accepted.reason == "PortUnavailable"
    separate = statuses(*documents, options=TranslateOptions(bind_port_zero=True))
    second = separate.gateway("infra", "second")
    assert second is not None
    accepted = second.listeners[0].condition(Reason.ACCEPTED)
    assert accepted is not None and accepted.is_true


def test_gateway_class_filter_and_none_serves_all() -> None:
    documents = (
        gateway([listener()], name="mine"),
        gateway([listener()], name="theirs", gateway_class="x"),
    )
    ir_all, _ = build_ir(world(*documents), TranslateOptions(bind_port_zero=True))
    ir_mine, statuses_mine = build_ir(world(*documents), TranslateOptions(gateway_class="eg"))
    assert {item.gateway.name for item in ir_all.listeners} == {"mine", "theirs"}
    assert {item.gateway.name for item in ir_mine.listeners} == {"mine"}
    assert statuses_mine.gateway("infra", "theirs") is None


def test_partially_invalid_route_drops_only_the_bad_rule() -> None:
    result = statuses(
        gateway([listener(allowed_routes={"namespaces": {"from": "All"}})]),
        service("web"),
        route(
            "app",
            rules=[
                {"matches": [prefix("/ok")], "backendRefs": [backend("web")]},
                {
                    "matches": [{"path": {"type": "RegularExpression", "value": "/(?=x)"}}],
                    "backendRefs": [backend("web")],
                },
            ],
        ),
    )
    conditions = parent_conditions(result)
    assert conditions["Accepted"] == "True/Accepted"
    assert conditions["PartiallyInvalid"] == "True/UnsupportedValue"
    status = result.http_route("default", "app")
    assert status is not None
    message = status.parents[0].condition("PartiallyInvalid").message  # type: ignore[union-attr]
    assert message.startswith("Dropped Rule") and "invalid perl operator" in message


def test_observed_generation_is_the_objects_generation() -> None:
    documents = [
        gateway([listener()], generation=3),
        route("app", namespace="infra"),
    ]
    documents[1]["metadata"]["generation"] = 7
    result = statuses(*documents)
    gateway_status = result.gateway("infra", "eg")
    assert gateway_status is not None
    assert {c.observed_generation for c in gateway_status.conditions} == {3}
    route_status = result.http_route("infra", "app")
    assert route_status is not None
    assert {c.observed_generation for c in route_status.parents[0].conditions} == {7}
