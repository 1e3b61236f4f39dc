"""`harness serve` and `harness probe`: users' manifests served by the real system, on loopback.

Both commands start the same stack: the control plane translating the manifests, real Envoy fed
over ADS, and one echo pod per Service (every Service port is backed by it). Each Gateway
listener is bound to a port the OS picks, so Gateways that share a port in the manifests do not
collide; requests name the Gateway and the port *as written in the manifests*, and the mapping
comes from the translation. Redirects still carry the manifests' ports: the translator writes
them, never Envoy's bound port. Objects a gateway does not read (Deployments, ServiceAccounts,
route kinds it does not serve) are skipped with a note; anything else malformed exits 2.

`serve` prints where each Gateway listener is served and runs until SIGINT/SIGTERM. `probe`
reads JSON request lines, sends each through Envoy on a fresh connection and prints one JSON
line per request; its status lines go to stderr so stdout stays pure JSON lines.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Literal, TextIO

import attrs

from harness.lockstep.stack import Stack, StackSettings
from harness.loopback import EnvoyError, XdsMode
from harness.loopback.echo import EchoReply
from harness.loopback.probe import ProbeResult, probe
from sut.errors import ConfigError, ManifestError
from sut.gatewayapi import ConditionStatus, ObjectKey, Reason, Resources, Statuses, load_manifests

__all__ = [
    "ProbeRequest",
    "RequestLineError",
    "ServeError",
    "ServedListener",
    "add_serve_commands",
    "answer",
    "load_manifest_paths",
    "parse_requests",
    "served_listeners",
    "serving",
    "status_problems",
]

EXIT_OK, EXIT_USAGE = 0, 2
Scheme = Literal["http", "https"]


class ServeError(RuntimeError):
    """The stack could not be brought up (an environment problem: exit 2)."""


class RequestLineError(ConfigError):
    """A line of the requests file is not a valid request; names the file and line number."""

    def __init__(self, source: str, line: int, message: str) -> None:
        super().__init__(f"{source}:{line}: {message}")
        self.source = source
        self.line = line
        self.reason = message


# --------------------------------------------------------------------------- the stack


@attrs.frozen
class ServedListener:
    """One Gateway listener and where Envoy serves it locally (None when it is not served)."""

    gateway: ObjectKey
    listener: str
    protocol: str
    port: int
    """The port as written in the manifests."""
    address: tuple[str, int] | None
    reason: str = ""
    """Why the listener is not served (empty when it is)."""

    def describe(self) -> str:
        where = f"{self.gateway} listener {self.listener} {self.protocol} port {self.port}"
        if self.address is None:
            return f"not serving {where}: {self.reason}"
        return f"serving {where} -> {self.address[0]}:{self.address[1]}"


def load_manifest_paths(
    paths: Sequence[str | Path], *, skipped: list[str] | None = None
) -> Resources:
    """Every manifest file, or every *.yaml/*.yml in a directory, as one all-or-nothing load.

    Objects the gateway has no use for are left out (the loader's `skip_unrelated`) and
    described in `skipped`; everything else must load, or ManifestError names the document and
    field.
    """
    files: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
            if not found:
                raise ManifestError("directory holds no *.yaml or *.yml file", document=str(path))
            files.extend(found)
        else:
            files.append(path)
    if not files:
        raise ManifestError("no manifest given")
    notes: list[str] = [] if skipped is None else skipped
    return load_manifests(*files, skip_unrelated=True, on_skip=notes.append)


@contextlib.contextmanager
def serving(
    resources: Resources, *, gateway_class: str | None = None, mode: XdsMode = "delta"
) -> Iterator[Stack]:
    """The stack serving `resources`, converged; stopped on exit, also when start-up fails.

    One echo pod per Service; no extension server (its marker would change every answer).
    """
    stack = Stack(StackSettings(mode=mode, extension=False, gateway_class=gateway_class))
    try:
        for service in resources.services:
            stack.scale(service.metadata.namespace, service.metadata.name, 1)
        try:
            stack.start(resources)
        except EnvoyError as error:
            raise ServeError(f"Envoy did not start: {error}") from error
        result = stack.control_plane.last_result if stack.control_plane else None
        if result is not None and result.error:
            raise ServeError(f"the control plane did not publish: {result.error}")
        convergence = stack.converge()
        if not convergence.converged:
            raise ServeError(f"Envoy did not take the configuration: {convergence.describe()}")
        yield stack
    finally:
        stack.stop()


def _statuses(stack: Stack) -> Statuses:
    assert stack.control_plane is not None and stack.control_plane.last_translation is not None
    return stack.control_plane.last_translation.statuses


def served_listeners(stack: Stack) -> tuple[ServedListener, ...]:
    """Every Gateway listener of the served Gateways, in Gateway then manifest order."""
    assert stack.control_plane is not None and stack.control_plane.last_translation is not None
    translation = stack.control_plane.last_translation
    bound = stack.listener_ports()
    served: dict[tuple[ObjectKey, str], ServedListener] = {}
    for listener in translation.ir.listeners:
        addresses = bound.get(listener.name, ())
        for name in listener.gateway_listeners:
            served[(listener.gateway, name)] = ServedListener(
                gateway=listener.gateway,
                listener=name,
                protocol=listener.protocol,
                port=listener.port,
                address=addresses[0] if addresses else None,
                reason="" if addresses else "Envoy has not bound this listener",
            )
    result: list[ServedListener] = []
    for status in translation.statuses.gateways:
        gateway = stack.control_plane.store.gateway(status.gateway.namespace, status.gateway.name)
        assert gateway is not None
        for spec in gateway.listeners:
            found = served.get((gateway.key, spec.name))
            if found is None:
                listener_status = status.listener(spec.name)
                conditions = listener_status.conditions if listener_status else ()
                failed = [c for c in conditions if c.status == ConditionStatus.FALSE]
                reason = "; ".join(f"{c.type}={c.status} {c.reason}: {c.message}" for c in failed)
                found = ServedListener(
                    gateway=gateway.key,
                    listener=spec.name,
                    protocol=spec.protocol,
                    port=spec.port,
                    address=None,
                    reason=reason or "not programmed",
                )
            result.append(found)
    return tuple(result)


def status_problems(statuses: Statuses) -> list[str]:
    """One line per HTTPRoute parent that is not Accepted, has unresolved refs or dropped rules."""
    lines = []
    for route in statuses.http_routes:
        for parent in route.parents:
            ref = parent.parent_ref
            where = f"{ref.namespace or route.route.namespace}/{ref.name}"
            if ref.section_name:
                where += f" sectionName {ref.section_name}"
            for condition in parent.conditions:
                bad = (
                    condition.status == ConditionStatus.TRUE
                    if condition.type == Reason.PARTIALLY_INVALID
                    else condition.status != ConditionStatus.TRUE
                )
                if bad:
                    lines.append(
                        f"HTTPRoute {route.route} on {where}: {condition.type}={condition.status}"
                        f" {condition.reason}: {condition.message}"
                    )
    return lines


# --------------------------------------------------------------------------- requests


def _frozen_headers(value: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(value.items())


@attrs.frozen
class ProbeRequest:
    """One request line: which Gateway and manifest port, and the HTTP request to send."""

    gateway: ObjectKey
    port: int
    scheme: Scheme
    host: str
    path: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_frozen_headers)
    sni: str | None = None
    """TLS server name; defaults to `host` (set it to test a mismatch)."""
    given: Any = attrs.field(default=None, eq=False, repr=False)
    """The line's JSON object exactly as given, echoed back in the answer."""

    def __attrs_post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port must be in 1..65535, got {self.port}")
        if self.scheme not in ("http", "https"):
            raise ValueError(f"scheme must be http or https, got {self.scheme!r}")
        if not self.host:
            raise ValueError("host must not be empty")
        if not self.path.startswith("/"):
            raise ValueError(f"path must start with '/', got {self.path!r}")
        if not self.method or not self.method.isalpha():
            raise ValueError(f"method must be an HTTP method name, got {self.method!r}")


_REQUIRED_FIELDS = ("gateway", "port", "host", "path")
_KNOWN_FIELDS = (*_REQUIRED_FIELDS, "scheme", "method", "headers", "sni")


def _gateway_key(value: object) -> ObjectKey:
    if not isinstance(value, str) or not value:
        raise ValueError(f'gateway must be "namespace/name", got {value!r}')
    namespace, _, name = value.rpartition("/")
    if not name or (value.count("/") > 1) or ("/" in value and not namespace):
        raise ValueError(f'gateway must be "namespace/name", got {value!r}')
    return ObjectKey(namespace or "default", name)


def _parse_request(document: object) -> ProbeRequest:
    if not isinstance(document, dict):
        raise ValueError(f"must be a JSON object, got {type(document).__name__}")
    unknown = sorted(set(document) - set(_KNOWN_FIELDS))
    if unknown:
        raise ValueError(
            f"unknown field(s) {', '.join(unknown)} (known: {', '.join(_KNOWN_FIELDS)})"
        )
    missing = [name for name in _REQUIRED_FIELDS if name not in document]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    port = document["port"]
    if isinstance(port, bool) or not isinstance(port, int):
        raise ValueError(f"port must be an integer, got {port!r}")
    strings = {}
    for name in ("host", "path", "scheme", "method", "sni"):
        value = document.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {value!r}")
        strings[name] = value
    headers = document.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ValueError("headers must be an object of string values")
    scheme = (strings["scheme"] or "http").lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"scheme must be http or https, got {strings['scheme']!r}")
    return ProbeRequest(
        gateway=_gateway_key(document["gateway"]),
        port=port,
        scheme="https" if scheme == "https" else "http",
        host=strings["host"] or "",
        path=strings["path"] or "",
        method=(strings["method"] or "GET").upper(),
        headers=headers,
        sni=strings["sni"],
        given=document,
    )


def parse_requests(text: str, *, source: str = "<requests>") -> list[ProbeRequest]:
    """Every request of a JSON-lines text (blank lines skipped); the first bad line raises."""
    requests = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except json.JSONDecodeError as error:
            raise RequestLineError(source, number, f"not JSON: {error.msg}") from error
        try:
            requests.append(_parse_request(document))
        except ValueError as error:
            raise RequestLineError(source, number, str(error)) from error
    return requests


def _where(listeners: Sequence[ServedListener], request: ProbeRequest) -> ServedListener | str:
    """The served listener for a request, or why there is none."""
    protocol = request.scheme.upper()
    of_gateway = [item for item in listeners if item.gateway == request.gateway]
    if not of_gateway:
        return f"Gateway {request.gateway} is not served"
    on_port = [item for item in of_gateway if item.port == request.port]
    if not on_port:
        ports = ", ".join(sorted({str(item.port) for item in of_gateway}))
        return f"Gateway {request.gateway} has no listener on port {request.port} (ports: {ports})"
    matching = [item for item in on_port if item.protocol == protocol]
    if not matching:
        return (
            f"Gateway {request.gateway} port {request.port} is {on_port[0].protocol},"
            f" not {protocol}"
        )
    for item in matching:
        if item.address is not None:
            return item
    return f"Gateway {request.gateway} port {request.port} is not served: {matching[0].reason}"


def _headers_json(result: ProbeResult) -> dict[str, str | list[str]]:
    return {
        name: values[0] if len(values) == 1 else list(values) for name, values in result.headers
    }


def answer(
    listeners: Sequence[ServedListener], request: ProbeRequest, *, timeout: float = 5.0
) -> dict[str, Any]:
    """Send one request through Envoy and describe the outcome as the output JSON object."""
    found = _where(listeners, request)
    if isinstance(found, str):
        return {
            "request": request.given,
            "status": None,
            "response_headers": {},
            "echo": None,
            "error": found,
        }
    assert found.address is not None
    result = probe(
        found.address[0],
        found.address[1],
        request.host,
        request.path,
        method=request.method,
        headers=dict(request.headers),
        scheme=request.scheme,
        sni=request.sni,
        timeout=timeout,
    )
    echo: Any = None
    if result.status is not None and request.method != "HEAD":
        try:
            EchoReply.from_json(result.body)
            echo = json.loads(result.body)
        except ValueError:
            echo = None
    output: dict[str, Any] = {
        "request": request.given,
        "status": result.status,
        "response_headers": _headers_json(result),
        "echo": echo,
    }
    if result.error is not None:
        output["error"] = result.error
    return output


# --------------------------------------------------------------------------- commands


def _announce(stack: Stack, out: TextIO, skipped: Sequence[str]) -> tuple[ServedListener, ...]:
    for item in skipped:
        print(f"skipped {item}: not read by this gateway", file=out, flush=True)
    listeners = served_listeners(stack)
    for listener in listeners:
        print(listener.describe(), file=out, flush=True)
    if not any(listener.address for listener in listeners):
        print("no Gateway listener is served", file=out, flush=True)
    for line in status_problems(_statuses(stack)):
        print(line, file=out, flush=True)
    return listeners


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return EXIT_USAGE


def _run_serve(args: argparse.Namespace) -> int:
    stop = threading.Event()
    previous: dict[signal.Signals, Any] = {}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            previous[stop_signal] = signal.signal(stop_signal, on_signal)
    try:
        skipped: list[str] = []
        resources = load_manifest_paths(args.manifests, skipped=skipped)
        with serving(resources, gateway_class=args.gateway_class, mode=args.xds) as stack:
            _announce(stack, sys.stdout, skipped)
            print("ready; Ctrl-C to stop", file=sys.stdout, flush=True)
            stop.wait()
        print("stopped", file=sys.stdout, flush=True)
        return EXIT_OK
    except (ConfigError, ServeError, EnvoyError, OSError) as error:
        return _fail(str(error))
    finally:
        for stop_signal, handler in previous.items():
            signal.signal(stop_signal, handler)


def _run_probe(args: argparse.Namespace) -> int:
    try:
        skipped: list[str] = []
        resources = load_manifest_paths(args.manifests, skipped=skipped)
        try:
            text = Path(args.requests).read_text(encoding="utf-8")
        except (OSError, ValueError) as error:  # ValueError: not UTF-8
            return _fail(f"cannot read requests file {args.requests}: {error}")
        requests = parse_requests(text, source=str(args.requests))
        with serving(resources, gateway_class=args.gateway_class, mode=args.xds) as stack:
            listeners = _announce(stack, sys.stderr, skipped)
            for request in requests:
                line = json.dumps(answer(listeners, request, timeout=args.timeout))
                print(line, file=sys.stdout, flush=True)
        return EXIT_OK
    except (ConfigError, ServeError, EnvoyError, OSError) as error:
        return _fail(str(error))


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--manifests",
        nargs="+",
        action="extend",
        required=True,
        metavar="FILE",
        help="Kubernetes YAML files (multi-document) or directories of them",
    )
    parser.add_argument(
        "--gateway-class",
        metavar="NAME",
        default=None,
        help="serve only Gateways of this GatewayClass (default: every Gateway, even when its"
        " GatewayClass object is not in the manifests)",
    )
    parser.add_argument(
        "--xds",
        choices=["delta", "sotw"],
        default="delta",
        help="xDS protocol variant between Envoy and the control plane (default: delta)",
    )


def add_serve_commands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Register `serve` and `probe` on the `python -m harness` command line."""
    serve = subparsers.add_parser(
        "serve",
        help="serve Gateway API manifests through real Envoy on loopback until interrupted",
        description="Start the control plane, real Envoy and one echo backend per Service for"
        " the manifests, print one line per Gateway listener (gateway, listener, protocol,"
        " manifest port -> local address), and run until Ctrl-C or SIGTERM. Exit 0 when"
        " stopped, 2 on a malformed manifest or an environment problem.",
    )
    _common_arguments(serve)
    serve.set_defaults(run=_run_serve)
    probe_parser = subparsers.add_parser(
        "probe",
        help="serve manifests, send JSON-lines requests through Envoy, print JSON-lines answers",
        description="Start as `serve` does, then for each line of the requests file (a JSON"
        ' object: "gateway" ("namespace/name"), "port" (as in the manifest), "scheme" (http or'
        ' https, default http), "host", "path", optional "method", "headers" (object) and "sni")'
        ' print one JSON line {"request", "status", "response_headers", "echo"} to stdout'
        ' ("status" null plus "error" when nothing answered), then exit 0. Listener lines go to'
        " stderr. Exit 2 on a malformed manifest or request line.",
    )
    _common_arguments(probe_parser)
    probe_parser.add_argument(
        "--requests", required=True, metavar="FILE.jsonl", help="one JSON request per line"
    )
    probe_parser.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="per-request timeout (default: 5)",
    )
    probe_parser.set_defaults(run=_run_probe)
