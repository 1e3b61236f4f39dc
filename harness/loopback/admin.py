"""A typed client of Envoy's admin API: config_dump, listeners, clusters, stats, readiness.

Each call uses a fresh connection and a short timeout; a JSON document without the fields we
read is reported as `AdminError`, never as a KeyError from deep inside.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import attrs

from harness.loopback.errors import AdminError

__all__ = ["ClusterStatus", "EnvoyAdmin", "HostStatus", "ListenerStatus"]


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
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        timeout: float | None = None,
    ) -> tuple[int, bytes]:
        """Raw call: (status, body). AdminError if the endpoint does not answer. `timeout`
        (default: the client's) bounds each socket operation; Envoy sends nothing until it has
        built the whole answer, so a large config_dump needs a longer one."""
        target = path + ("?" + urllib.parse.urlencode(params) if params else "")
        connection = http.client.HTTPConnection(
            self.address, self.port, timeout=self.timeout if timeout is None else timeout
        )
        try:
            connection.request(method, target, headers={"Connection": "close"})
            response = connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as error:
            raise AdminError(f"admin {method} {target} failed: {error!r}") from error
        finally:
            connection.close()

    def get_json(
        self, path: str, params: Mapping[str, str] | None = None, *, timeout: float | None = None
    ) -> Any:
        status, body = self.request("GET", path, params, timeout=timeout)
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
        self,
        resource: str | None = None,
        mask: str | None = None,
        include_eds: bool = False,
        *,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """/config_dump as JSON; `resource` e.g. 'dynamic_listeners', 'dynamic_active_clusters'
        (then `configs` lists that field's items, and is absent when there are none)."""
        params: dict[str, str] = {}
        if resource is not None:
            params["resource"] = resource
        if mask is not None:
            params["mask"] = mask
        if include_eds:
            params["include_eds"] = "true"
        document = self.get_json("/config_dump", params, timeout=timeout)
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
