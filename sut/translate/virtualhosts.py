"""Stage 1, virtual hosts: the IR listeners, filter chains and virtual hosts of the served Gateways.

Rules of this module:

- One IR listener per served Gateway and port, from its programmed listeners. HTTP: one filter
  chain and one RouteConfiguration for the port. HTTPS: one filter chain per listener, selected
  by SNI (the listener's hostname), with its own RouteConfiguration and certificates.
- A virtual host per hostname a route has on the listener; routes ordered by `precedence`.
- Listener Isolation: on one port, a route hostname that a more specific listener covers is
  dropped from the less specific listener, and (HTTP, shared RouteConfiguration) every listener
  hostname gets a virtual host, so hosts of a specific listener never reach a broader one.
- Misdirected requests (Listener.Hostname): on an HTTPS filter chain, the hostnames of the
  port's other listeners answer 421, the chain's own hostname keeps 404 for unrouted hosts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sut.gatewayapi import Gateway, HTTPRoute, Listener, ObjectKey
from sut.translate.attachment import RouteResult, RoutesOnListener
from sut.translate.hostnames import covers, more_specific
from sut.translate.ir import (
    DirectResponse,
    FilterChain,
    IRListener,
    Route,
    RouteAction,
    RouteConfig,
    RouteMatchIR,
    RouteSource,
    StringMatch,
    TLSCertificate,
    VirtualHost,
)
from sut.translate.listeners import ListenerState
from sut.translate.planning import redirect
from sut.translate.precedence import match_ir, precedence_key

__all__ = ["ir_listeners"]


def _virtual_host_routes(
    domain: str,
    entries: Iterable[tuple[HTTPRoute, RouteResult]],
    listener: Listener,
) -> tuple[Route, ...]:
    keyed: list[tuple[tuple[object, ...], Route]] = []
    host_part = domain.replace(".", "_")
    for route, result in entries:
        created = route.metadata.creation_timestamp
        base = f"httproute/{route.metadata.namespace}/{route.metadata.name}/rule/"
        for plan in result.plans:
            if plan.problem is not None:
                continue
            action: RouteAction
            if plan.action is None:
                action = redirect(plan.rule, listener, domain)
            else:
                action = plan.action
            for j, match in enumerate(plan.rule.matches):
                source = RouteSource(route.key, plan.index, j)
                ir_match = match_ir(match)
                ir_route = Route(
                    name=f"{base}{plan.index}/match/{j}/{host_part}",
                    match=ir_match,
                    action=action,
                    source=source,
                    request_headers=plan.request_headers,
                    response_headers=plan.response_headers,
                )
                keyed.append((precedence_key(ir_match, created, source), ir_route))
    keyed.sort(key=lambda item: item[0])
    return tuple(route for _, route in keyed)


def _isolated(state: ListenerState, hostname: str, port_group: Sequence[ListenerState]) -> bool:
    """Listener Isolation: a more specific listener on this port owns `hostname`."""
    return any(
        other is not state
        and covers(other.spec.hostname, hostname)
        and more_specific(other.spec.hostname, state.spec.hostname)
        for other in port_group
    )


def _listener_virtual_hosts(
    state: ListenerState,
    port_group: Sequence[ListenerState],
    routes_on: RoutesOnListener,
    placeholder: bool,
) -> list[VirtualHost]:
    by_domain: dict[str, list[tuple[HTTPRoute, RouteResult]]] = {}
    for route, result, hostnames in routes_on.get(id(state), []):
        for hostname in hostnames:
            if not _isolated(state, hostname, port_group):
                by_domain.setdefault(hostname, []).append((route, result))
    if placeholder and state.spec.hostname is not None:
        by_domain.setdefault(state.spec.hostname, [])
    hosts = []
    for domain in sorted(by_domain):
        hosts.append(
            VirtualHost(
                name=f"{state.ir_name}/{domain.replace('.', '_')}",
                domain=domain,
                routes=_virtual_host_routes(domain, by_domain[domain], state.spec),
            )
        )
    return hosts


_MISDIRECTED_STATUS = 421


def _with_misdirected_hosts(
    state: ListenerState, port_group: Sequence[ListenerState], hosts: list[VirtualHost]
) -> tuple[VirtualHost, ...]:
    """HTTPS: a Host that another listener of the port serves answers 421 on this connection.

    Listener.Hostname: "If another Listener has an exact match or more specific wildcard entry,
    the Gateway SHOULD return a 421. If the current Listener (selected by SNI matching during
    ClientHello) does not match the Host: If another Listener does match the Host, the Gateway
    SHOULD return a 421. If no other Listener matches the Host, the Gateway MUST return a 404."
    Without this, a more specific listener's Host reaches this listener's wildcard routes over
    a connection whose SNI chose this listener. Each other listener's hostname becomes a virtual
    host answering 421; this listener's own hostname gets a route-less virtual host (404) so its
    hosts never fall into a broader 421 host. Envoy picks the most specific domain, which is
    exactly the listener precedence of the spec.
    """
    taken = {host.domain for host in hosts}
    result = list(hosts)

    def add(domain: str, routes: tuple[Route, ...]) -> None:
        if domain not in taken:
            taken.add(domain)
            name = f"{state.ir_name}/{domain.replace('.', '_')}"
            result.append(VirtualHost(name=name, domain=domain, routes=routes))

    others = [other for other in port_group if other is not state]
    if not others:
        return tuple(hosts)
    if state.spec.hostname is not None:
        add(state.spec.hostname, ())
    for other in others:
        domain = other.spec.hostname or "*"
        misdirected = Route(
            name=f"{state.ir_name}/misdirected/{domain.replace('.', '_')}",
            match=RouteMatchIR(path=StringMatch(kind="PathPrefix", value="/")),
            action=DirectResponse(_MISDIRECTED_STATUS),
            # Not from an HTTPRoute: the source names the Gateway, rule and match -1.
            source=RouteSource(other.gateway.key, -1, -1),
        )
        add(domain, (misdirected,))
    return tuple(sorted(result, key=lambda host: (host.domain, host.name)))


def ir_listeners(
    served: Sequence[Gateway],
    listeners_by_gateway: dict[ObjectKey, list[ListenerState]],
    routes_on: RoutesOnListener,
) -> tuple[list[IRListener], dict[str, TLSCertificate]]:
    """The IR listeners of the programmed Gateway listeners, and the certificates they serve."""
    listeners: list[IRListener] = []
    secrets: dict[str, TLSCertificate] = {}
    for gateway in served:
        ports: dict[int, list[ListenerState]] = {}
        for state in listeners_by_gateway[gateway.key]:
            if state.is_programmed:
                ports.setdefault(state.spec.port, []).append(state)
        for port, group in ports.items():
            first = group[0]
            if first.spec.protocol == "HTTP":
                chains = [_http_chain(group, routes_on)]
            else:
                chains = [_https_chain(state, group, routes_on) for state in group]
                for state in group:
                    secrets.update((c.name, c) for c in state.certificates)
            listeners.append(
                IRListener(
                    name=first.ir_name,
                    gateway=gateway.key,
                    port=port,
                    protocol=first.spec.protocol,
                    gateway_listeners=tuple(state.spec.name for state in group),
                    filter_chains=tuple(chains),
                )
            )
    return listeners, secrets


def _http_chain(group: Sequence[ListenerState], routes_on: RoutesOnListener) -> FilterChain:
    """HTTP: every listener of the port shares one chain and one RouteConfiguration."""
    first = group[0]
    hosts: list[VirtualHost] = []
    for state in group:
        hosts.extend(_listener_virtual_hosts(state, group, routes_on, len(group) > 1))
    hosts.sort(key=lambda host: (host.domain, host.name))
    return FilterChain(
        name=first.ir_name,
        server_names=(),
        certificates=(),
        route_config=RouteConfig(first.ir_name, tuple(hosts)),
    )


def _https_chain(
    state: ListenerState, group: Sequence[ListenerState], routes_on: RoutesOnListener
) -> FilterChain:
    """HTTPS: each listener has its own chain, chosen by SNI, and its own RouteConfiguration."""
    hosts = _listener_virtual_hosts(state, group, routes_on, False)
    return FilterChain(
        name=state.ir_name,
        server_names=(state.spec.hostname,) if state.spec.hostname else (),
        certificates=tuple(c.name for c in state.certificates),
        route_config=RouteConfig(state.ir_name, _with_misdirected_hosts(state, group, hosts)),
    )
