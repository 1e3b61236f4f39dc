"""Envoy proto pieces stated once: packing into Any, the config sources (ADS or per type), the
HTTP connection manager filter, and the walk over every connection manager of a Listener.

Stage 2 builds Listeners with these; the failure policies (`sut.controlplane`) and the reference
extension server (`sut.extension`) read and rewrite the same connection managers with them, so
"which filters hold an HCM" is decided in one place: every filter chain, the default one
included, and any network filter whose typed_config is an HttpConnectionManager (Envoy goes by
the type name, whatever the URL prefix).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator

from envoy.config.core.v3 import config_source_pb2, grpc_service_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message

__all__ = [
    "HTTP_CONNECTION_MANAGER",
    "TRANSPORTS",
    "XDS_MODES",
    "ads_config_source",
    "config_source",
    "connection_manager_filter",
    "connection_managers",
    "packed",
    "router_filter",
    "with_connection_managers",
]

HTTP_CONNECTION_MANAGER = "envoy.filters.network.http_connection_manager"
"""The network filter name Envoy Gateway gives the HTTP connection manager."""

_HCM_DESCRIPTOR = hcm_pb2.HttpConnectionManager.DESCRIPTOR


def packed(message: Message) -> any_pb2.Any:
    """`message` as a typed_config (type.googleapis.com/<full name>)."""
    result = any_pb2.Any()
    result.Pack(message)
    return result


def ads_config_source(
    initial_fetch_timeout: datetime.timedelta | None = None,
) -> config_source_pb2.ConfigSource:
    """Fetch over the ADS stream (v3); without a timeout, Envoy's default applies."""
    source = config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.ApiVersion.V3,
    )
    if initial_fetch_timeout is not None:
        timeout = duration_pb2.Duration()
        timeout.FromTimedelta(initial_fetch_timeout)
        source.initial_fetch_timeout.CopyFrom(timeout)
    return source


TRANSPORTS = ("ads", "per-type")
"""How Envoy fetches dynamic resources: all on the one ADS stream, or one gRPC stream per type."""

XDS_MODES = {
    "sotw": config_source_pb2.ApiConfigSource.GRPC,
    "delta": config_source_pb2.ApiConfigSource.DELTA_GRPC,
}
"""The `api_type` of a per-type source, by xDS mode."""


def config_source(
    transport: str,
    *,
    mode: str = "sotw",
    cluster: str = "",
    initial_fetch_timeout: datetime.timedelta | None = None,
    retry: tuple[datetime.timedelta, datetime.timedelta] | None = None,
) -> config_source_pb2.ConfigSource:
    """Where Envoy fetches one dynamic resource, for `transport`.

    "ads": the ADS stream (`ads_config_source`). "per-type": a gRPC stream of its own to the
    bootstrap cluster `cluster`, in `mode`; Delta sends the node on the first message only, as
    Envoy Gateway's Delta xDS does, SotW on every message (Envoy's default); `retry` is the
    (base, max) back-off for re-opening that stream.
    """
    if transport == "ads":
        return ads_config_source(initial_fetch_timeout)
    if transport != "per-type":
        raise ValueError(f"unknown xDS transport {transport!r}; expected one of {TRANSPORTS}")
    if mode not in XDS_MODES:
        raise ValueError(f"unknown xDS mode {mode!r}; expected one of {tuple(XDS_MODES)}")
    if not cluster:
        raise ValueError("a per-type config source needs the name of its bootstrap cluster")
    grpc_service = grpc_service_pb2.GrpcService(
        envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=cluster)
    )
    if retry is not None:
        back_off = grpc_service.envoy_grpc.retry_policy.retry_back_off
        back_off.base_interval.FromTimedelta(retry[0])
        back_off.max_interval.FromTimedelta(retry[1])
    source = config_source_pb2.ConfigSource(
        api_config_source=config_source_pb2.ApiConfigSource(
            api_type=XDS_MODES[mode],
            transport_api_version=config_source_pb2.ApiVersion.V3,
            grpc_services=[grpc_service],
            set_node_on_first_message_only=mode == "delta",
        ),
        resource_api_version=config_source_pb2.ApiVersion.V3,
    )
    _set_initial_fetch_timeout(source, initial_fetch_timeout)
    return source


def _set_initial_fetch_timeout(
    source: config_source_pb2.ConfigSource, initial_fetch_timeout: datetime.timedelta | None
) -> None:
    if initial_fetch_timeout is not None:
        timeout = duration_pb2.Duration()
        timeout.FromTimedelta(initial_fetch_timeout)
        source.initial_fetch_timeout.CopyFrom(timeout)


def router_filter() -> hcm_pb2.HttpFilter:
    return hcm_pb2.HttpFilter(
        name="envoy.filters.http.router", typed_config=packed(router_pb2.Router())
    )


def connection_manager_filter(
    manager: hcm_pb2.HttpConnectionManager,
) -> listener_components_pb2.Filter:
    return listener_components_pb2.Filter(
        name=HTTP_CONNECTION_MANAGER, typed_config=packed(manager)
    )


def connection_managers(
    listener: listener_pb2.Listener,
) -> Iterator[tuple[listener_components_pb2.Filter, hcm_pb2.HttpConnectionManager]]:
    """Each network filter of `listener` holding an HCM, with the HCM unpacked.

    The HCM is a copy: to change the Listener, pack it back into the filter's typed_config (or
    use `with_connection_managers`).
    """
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    for chain in chains:
        for network_filter in chain.filters:
            if network_filter.typed_config.Is(_HCM_DESCRIPTOR):
                manager = hcm_pb2.HttpConnectionManager()
                network_filter.typed_config.Unpack(manager)
                yield network_filter, manager


def with_connection_managers(
    listener: listener_pb2.Listener, change: Callable[[hcm_pb2.HttpConnectionManager], None]
) -> listener_pb2.Listener:
    """A copy of `listener` in which `change` has been applied to every HCM."""
    changed = listener_pb2.Listener()
    changed.CopyFrom(listener)
    for network_filter, manager in connection_managers(changed):
        change(manager)
        network_filter.typed_config.Pack(manager)
    return changed
