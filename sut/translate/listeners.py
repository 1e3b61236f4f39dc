"""Stage 1, listeners: which Gateways are served, and what each of their listeners accepts.

Rules of this module:

- Served Gateways: those of `options.gateway_class` (all when None), oldest first (then
  namespace/name).
- Listener validity: protocol HTTP/HTTPS (else UnsupportedProtocol); listeners of one Gateway on
  one port with different protocols are Conflicted (ProtocolConflict) and not accepted; HTTPS
  needs `tls` with at least one valid certificate (see `certificates`); allowedRoutes.kinds
  other than HTTPRoute give InvalidRouteKinds. Without `bind_port_zero`, a later Gateway cannot
  reuse a port another served Gateway of its proxy fleet (`options.gateway_fleets`) already
  listens on: PortUnavailable. Gateways of different fleets run on different proxies.
- A Gateway with spec.addresses is not accepted at all (UnsupportedAddress): none of its
  listeners is accepted.
"""

from __future__ import annotations

import datetime

import attrs

from sut.gatewayapi import (
    GATEWAY_GROUP,
    Condition,
    Gateway,
    Listener,
    ObjectKey,
    Reason,
    Resources,
    RouteGroupKind,
)
from sut.translate.certificates import resolve_certificates
from sut.translate.ir import TLSCertificate
from sut.translate.options import TranslateOptions
from sut.translate.precedence import creation_order

__all__ = ["HTTPROUTE_KIND", "ListenerState", "evaluate_gateways", "served_gateways"]

HTTPROUTE_KIND = RouteGroupKind(kind="HTTPRoute", group=GATEWAY_GROUP)
_SUPPORTED_PROTOCOLS = ("HTTP", "HTTPS")


@attrs.define
class ListenerState:
    """What stage 1 learns about one Gateway listener; filled in as the stage runs (conditions
    first, then the routes attached to it)."""

    gateway: Gateway
    spec: Listener
    supported_kinds: tuple[RouteGroupKind, ...] = ()
    accepted: Condition | None = None
    conflicted: Condition | None = None
    resolved_refs: Condition | None = None
    certificates: list[TLSCertificate] = attrs.Factory(list)
    attached: set[ObjectKey] = attrs.Factory(set)

    @property
    def ir_name(self) -> str:
        return f"{self.gateway.metadata.namespace}/{self.gateway.metadata.name}/{self.spec.name}"

    @property
    def is_accepted(self) -> bool:
        return self.accepted is not None and self.accepted.is_true

    @property
    def is_programmed(self) -> bool:
        if not self.is_accepted:
            return False
        return self.spec.protocol == "HTTP" or bool(self.certificates)


def _gateway_order(gateway: Gateway) -> tuple[datetime.datetime, ObjectKey]:
    return (creation_order(gateway.metadata.creation_timestamp), gateway.key)


def _evaluate_listeners(
    gateway: Gateway, resources: Resources, ports_taken: dict[int, ObjectKey] | None
) -> list[ListenerState]:
    generation = gateway.metadata.generation
    states = [ListenerState(gateway, spec) for spec in gateway.listeners]
    protocols_by_port: dict[int, set[str]] = {}
    for spec in gateway.listeners:
        protocols_by_port.setdefault(spec.port, set()).add(spec.protocol)
    for state in states:
        spec = state.spec
        state.supported_kinds, kinds_problem = _supported_kinds(spec)
        problems: list[tuple[str, str]] = []  # (reason, message) for Accepted=False
        if spec.protocol not in _SUPPORTED_PROTOCOLS:
            problems.append(
                (Reason.UNSUPPORTED_PROTOCOL, f"protocol {spec.protocol} is not supported")
            )
        if len(protocols_by_port[spec.port]) > 1:
            state.conflicted = Condition.of(
                Reason.CONFLICTED,
                True,
                Reason.PROTOCOL_CONFLICT,
                f"port {spec.port} is used with protocols "
                + ", ".join(sorted(protocols_by_port[spec.port])),
                generation,
            )
            problems.append((Reason.PROTOCOL_CONFLICT, "listener conflicts on its port"))
        if spec.protocol == "HTTPS" and spec.tls is None:
            problems.append((Reason.UNSUPPORTED_VALUE, "HTTPS listeners need tls settings"))
        if ports_taken is not None and spec.protocol in _SUPPORTED_PROTOCOLS:
            owner = ports_taken.setdefault(spec.port, gateway.key)
            if owner != gateway.key:
                problems.append(
                    (Reason.PORT_UNAVAILABLE, f"port {spec.port} is used by Gateway {owner}")
                )
        if problems:
            reason, message = problems[0]
            state.accepted = Condition.of(Reason.ACCEPTED, False, reason, message, generation)
        else:
            state.accepted = Condition.of(
                Reason.ACCEPTED, True, Reason.ACCEPTED, "listener accepted", generation
            )
        refs_problem = kinds_problem
        if spec.protocol == "HTTPS" and spec.tls is not None:
            state.certificates, cert_problem = resolve_certificates(gateway, spec, resources)
            refs_problem = refs_problem or cert_problem
        if refs_problem is None:
            state.resolved_refs = Condition.of(
                Reason.RESOLVED_REFS, True, Reason.RESOLVED_REFS, "references resolved", generation
            )
        else:
            state.resolved_refs = Condition.of(
                Reason.RESOLVED_REFS, False, refs_problem[0], refs_problem[1], generation
            )
    return states


def _supported_kinds(spec: Listener) -> tuple[tuple[RouteGroupKind, ...], tuple[str, str] | None]:
    if spec.protocol not in _SUPPORTED_PROTOCOLS:
        return (), None
    if not spec.allowed_routes.kinds:
        return (HTTPROUTE_KIND,), None
    valid = tuple(kind for kind in spec.allowed_routes.kinds if kind == HTTPROUTE_KIND)
    invalid = [kind for kind in spec.allowed_routes.kinds if kind != HTTPROUTE_KIND]
    if invalid:
        names = ", ".join(f"{kind.group}/{kind.kind}" for kind in invalid)
        return valid, (Reason.INVALID_ROUTE_KINDS, f"route kinds not supported: {names}")
    return valid, None


def served_gateways(resources: Resources, options: TranslateOptions) -> list[Gateway]:
    """The Gateways this translation serves, oldest first."""
    return sorted(
        (
            gateway
            for gateway in resources.gateways
            if options.gateway_class is None or gateway.gateway_class_name == options.gateway_class
        ),
        key=_gateway_order,
    )


def evaluate_gateways(
    served: list[Gateway], resources: Resources, options: TranslateOptions
) -> dict[ObjectKey, list[ListenerState]]:
    """The listener states of every served Gateway; in each fleet, ports go to the oldest
    Gateway first."""
    ports_by_fleet: dict[str, dict[int, ObjectKey]] = {}
    fleets = dict(options.gateway_fleets)
    listeners_by_gateway: dict[ObjectKey, list[ListenerState]] = {}
    for gateway in served:
        ports_taken = (
            None
            if options.bind_port_zero
            else ports_by_fleet.setdefault(fleets.get(gateway.key, ""), {})
        )
        states = _evaluate_listeners(gateway, resources, ports_taken)
        if gateway.addresses:  # UnsupportedAddress: the Gateway is not accepted at all
            for state in states:
                state.accepted = Condition.of(
                    Reason.ACCEPTED,
                    False,
                    Reason.UNSUPPORTED_VALUE,
                    "gateway not accepted",
                    gateway.metadata.generation,
                )
        listeners_by_gateway[gateway.key] = states
    return listeners_by_gateway
