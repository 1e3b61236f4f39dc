"""Checks on an extension's output for what Envoy would refuse; the runner treats any as a failure.

The extension may return well-formed protobufs that Envoy still NACKs. Publishing those would
freeze every RouteConfiguration or listener they touch at its old version on every proxy, so the
runner catches them here and applies the failure policy instead. Dangling references are caught
by the one consistency check (`sut.xds.consistency_errors`), not here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2

from sut.translate import XdsResources, check_regex
from sut.translate.envoy_protos import connection_managers

__all__ = ["envoy_rejections"]


def envoy_rejections(resources: XdsResources) -> list[str]:
    """Every reason Envoy would reject a resource of `resources`; empty when none is known."""
    problems: list[str] = []
    for config in resources.route_configurations:
        problems += _route_configuration_problems(config)
    for listener in resources.listeners:
        problems += _listener_problems(listener)
    return problems


def _forbidden_header(name: str) -> bool:
    lowered = name.lower()
    return lowered.startswith(":") or lowered == "host"


def _header_problems(
    where: str, added: Iterable[base_pb2.HeaderValueOption], removed: Iterable[str]
) -> Iterator[str]:
    for option in added:
        if _forbidden_header(option.header.key):
            yield f"{where}: ':'-prefixed or host header {option.header.key!r} may not be modified"
    for name in removed:
        if _forbidden_header(name):
            yield f"{where}: ':'-prefixed or host header {name!r} may not be removed"


def _route_configuration_problems(config: route_pb2.RouteConfiguration) -> Iterator[str]:
    where = f"RouteConfiguration {config.name!r}"
    yield from _header_problems(
        where, config.request_headers_to_add, config.request_headers_to_remove
    )
    yield from _header_problems(
        where, config.response_headers_to_add, config.response_headers_to_remove
    )
    domains: set[str] = set()
    for host in config.virtual_hosts:
        host_where = f"{where} virtual host {host.name!r}"
        for domain in host.domains:
            if domain in domains:
                yield f"{host_where}: domain {domain!r} is not unique in the route configuration"
            domains.add(domain)
        yield from _header_problems(
            host_where, host.request_headers_to_add, host.request_headers_to_remove
        )
        yield from _header_problems(
            host_where, host.response_headers_to_add, host.response_headers_to_remove
        )
        for route in host.routes:
            yield from _route_problems(f"{host_where} route {route.name!r}", route)


def _route_problems(where: str, route: route_components_pb2.Route) -> Iterator[str]:
    yield from _header_problems(
        where, route.request_headers_to_add, route.request_headers_to_remove
    )
    yield from _header_problems(
        where, route.response_headers_to_add, route.response_headers_to_remove
    )
    patterns = []
    if route.match.HasField("safe_regex"):
        patterns.append(route.match.safe_regex.regex)
    patterns += [
        h.string_match.safe_regex.regex
        for h in route.match.headers
        if h.string_match.HasField("safe_regex")
    ]
    for pattern in patterns:
        verdict = check_regex(pattern)
        if not verdict.ok:
            yield f"{where}: regex {pattern!r}: {verdict.error}"
    for weighted in route.route.weighted_clusters.clusters:
        yield from _header_problems(
            f"{where} weighted cluster {weighted.name!r}",
            weighted.request_headers_to_add,
            weighted.request_headers_to_remove,
        )


def _listener_problems(listener: listener_pb2.Listener) -> Iterator[str]:
    where = f"Listener {listener.name!r}"
    seen_matches: dict[bytes, str] = {}
    for chain in listener.filter_chains:
        key = chain.filter_chain_match.SerializeToString(deterministic=True)
        if key in seen_matches:
            yield (
                f"{where}: filter chain {chain.name!r} has the same matching rules as"
                f" {seen_matches[key]!r}"
            )
        seen_matches[key] = chain.name
    for _, manager in connection_managers(listener):
        if not manager.HasField("rds") and not manager.HasField("route_config"):
            yield f"{where}: HTTP connection manager has neither rds nor route_config"
