"""Loopback infrastructure: real Envoy (bootstrap, admin client, process, spares parked ahead of
need), the TCP relay in front of the xDS server, echo and gRPC echo pods, proxyless gRPC client
processes, HTTP(S) probes, the adapter to an external xDS server, and child-process hygiene.
Everything listens on 127.0.0.1 with ports chosen by the OS. Nothing here knows the model; the
SUT appears only as the values the adapter carries and the reference adapter it runs."""

from harness.loopback.admin import ClusterStatus, EnvoyAdmin, HostStatus, ListenerStatus
from harness.loopback.bootstrap import (
    XDS_CLUSTER,
    XDS_RETRY,
    XDS_TRANSPORTS,
    AdsServer,
    DirectResponseListener,
    EnvoyBootstrap,
    ProxyListener,
    StaticCluster,
    XdsMode,
    XdsTransport,
    envoy_binary,
    validate_bootstrap,
)
from harness.loopback.envoy import EnvoyProcess, LaunchOptions, ParkedEnvoy
from harness.loopback.errors import AdminError, EnvoyError, EnvoyExitedError, EnvoyTimeoutError
from harness.loopback.spares import SpareEnvoys, SpareStats

__all__ = [
    "XDS_CLUSTER",
    "XDS_RETRY",
    "XDS_TRANSPORTS",
    "AdminError",
    "AdsServer",
    "ClusterStatus",
    "DirectResponseListener",
    "EnvoyAdmin",
    "EnvoyBootstrap",
    "EnvoyError",
    "EnvoyExitedError",
    "EnvoyProcess",
    "EnvoyTimeoutError",
    "HostStatus",
    "LaunchOptions",
    "ListenerStatus",
    "ParkedEnvoy",
    "ProxyListener",
    "SpareEnvoys",
    "SpareStats",
    "StaticCluster",
    "XdsMode",
    "XdsTransport",
    "envoy_binary",
    "validate_bootstrap",
]
