"""What a fail-closed hook failure publishes: the three failure policies, as pure rewrites.

- keep-last-good (default, Envoy Gateway v1.4): publish nothing; proxies keep the last good config.
- rds-error: every RouteConfiguration becomes the error virtual host; listeners keep `rds`.
- inline-error (Envoy Gateway v1.3, known bad): every HCM gets the inline error route config,
  so Envoy drops its RDS subscriptions, and a cache that mishandles the re-subscription after
  recovery leaves routes at 404.

The readiness listener is never rewritten.
"""

from __future__ import annotations

import enum

import attrs
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from sut.translate import XdsResources
from sut.translate.envoy_protos import with_connection_managers

__all__ = [
    "ERROR_ROUTE_CONFIGURATION",
    "ERROR_VIRTUAL_HOST",
    "FailurePolicy",
    "error_route_configuration",
    "with_inline_error",
    "with_rds_error",
]

ERROR_ROUTE_CONFIGURATION = "error_route_configuration"
ERROR_VIRTUAL_HOST = "error_vhost"
ERROR_STATUS = 500


class FailurePolicy(enum.StrEnum):
    KEEP_LAST_GOOD = "keep-last-good"
    RDS_ERROR = "rds-error"
    INLINE_ERROR = "inline-error"


def error_route_configuration(
    name: str = ERROR_ROUTE_CONFIGURATION,
) -> route_pb2.RouteConfiguration:
    """One virtual host for every domain; every path answers 500."""
    config = route_pb2.RouteConfiguration(name=name, ignore_port_in_host_matching=True)
    host = config.virtual_hosts.add(name=ERROR_VIRTUAL_HOST, domains=["*"])
    route = host.routes.add(name=f"{ERROR_VIRTUAL_HOST}/all")
    route.match.prefix = "/"
    route.direct_response.status = ERROR_STATUS
    return config


def with_rds_error(resources: XdsResources) -> XdsResources:
    """Rewrite every RouteConfiguration to the error virtual host, keeping its name."""
    rewritten = tuple(error_route_configuration(rc.name) for rc in resources.route_configurations)
    return attrs.evolve(resources, route_configurations=rewritten)


def with_inline_error(resources: XdsResources) -> XdsResources:
    """Point every HCM (but the readiness listener's) at the inline error route config.

    The RouteConfigurations stay in the snapshot unchanged, as in Envoy Gateway v1.3: Envoy drops
    its RDS subscriptions, while the cache keeps believing Envoy holds them.
    """
    listeners = tuple(
        listener if listener.name == resources.readiness_listener else _inline(listener)
        for listener in resources.listeners
    )
    return attrs.evolve(resources, listeners=listeners)


def _inline(listener: listener_pb2.Listener) -> listener_pb2.Listener:
    def inline_error(manager: hcm_pb2.HttpConnectionManager) -> None:
        manager.ClearField("rds")
        manager.route_config.CopyFrom(error_route_configuration())

    return with_connection_managers(listener, inline_error)
