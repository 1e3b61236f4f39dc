"""Options of translation, shared by both stages."""

from __future__ import annotations

import datetime

import attrs

from sut.gatewayapi import ObjectKey

__all__ = ["TranslateOptions"]


@attrs.frozen
class TranslateOptions:
    """Knobs of translation; the defaults reproduce a production-like Envoy Gateway proxy."""

    gateway_class: str | None = None
    """Serve only Gateways of this class; None serves every Gateway (class object or not)."""
    bind_address: str = "0.0.0.0"
    bind_port_zero: bool = False
    """Bind every Gateway listener to port 0 (the harness reads the OS-chosen ports back)."""
    loopback_per_listener: bool = False
    """Bind each Gateway port to its own 127.x.y.z address, derived from the Gateway and the
    port. With port 0 every listener would otherwise have the same address, and Envoy hands the
    socket of a listener being replaced to a new listener with an equal address, so an HTTP and
    an HTTPS listener can end up sharing one socket."""
    readiness_port: int = 19001
    initial_fetch_timeout: datetime.timedelta = datetime.timedelta(seconds=15)
    connect_timeout: datetime.timedelta = datetime.timedelta(seconds=10)
    max_regex_program_size: int = 100
    """Envoy's `re2.max_program_size.error_level`; regexes above it are refused in status."""
    transport: str = "ads"
    """How Envoy fetches RDS, EDS and SDS: "ads" (on the ADS stream) or "per-type" (one gRPC
    stream per type, to the bootstrap clusters named below)."""
    per_type_mode: str = "sotw"
    """The xDS mode of per-type sources: "sotw" (api_type GRPC) or "delta" (DELTA_GRPC)."""
    rds_cluster: str = "xds-rds"
    eds_cluster: str = "xds-eds"
    sds_cluster: str = "xds-sds"
    per_type_retry: tuple[datetime.timedelta, datetime.timedelta] | None = None
    """(base, max) back-off with which Envoy re-opens a per-type stream; None: Envoy's default
    (0.5 s growing to 30 s). Each RouteConfiguration, endpoint set and Secret has a stream of its
    own there, so after a control-plane restart the config sources' back-off, not the
    bootstrap's, decides how soon updates reach them again; a gateway sets both alike."""

    gateway_fleets: tuple[tuple[ObjectKey, str], ...] = ()
    """(Gateway, fleet) for Gateways whose listeners a proxy fleet of their own binds (a node
    of their own); every other Gateway is of one shared fleet. A Gateway's port is unavailable
    only where an older Gateway of the same fleet listens on it: each fleet binds its own
    addresses."""

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.readiness_port <= 65535:
            raise ValueError(f"readiness_port must be in 0..65535, got {self.readiness_port}")
        if self.initial_fetch_timeout < datetime.timedelta(0):
            raise ValueError("initial_fetch_timeout must not be negative")
        if self.connect_timeout <= datetime.timedelta(0):
            raise ValueError("connect_timeout must be positive")
        if self.transport not in ("ads", "per-type"):
            raise ValueError(f"transport must be 'ads' or 'per-type', got {self.transport!r}")
        if self.per_type_mode not in ("sotw", "delta"):
            raise ValueError(f"per_type_mode must be 'sotw' or 'delta', got {self.per_type_mode!r}")
        if not (self.rds_cluster and self.eds_cluster and self.sds_cluster):
            raise ValueError("the per-type bootstrap cluster names must not be empty")
