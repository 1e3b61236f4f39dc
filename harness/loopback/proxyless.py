"""A proxyless gRPC client in a process of its own: gRPC's built-in xDS client as a second real
xDS client beside Envoy.

gRPC keeps one xDS client per process (per bootstrap), so each proxyless client is a child
process with its bootstrap in `GRPC_XDS_BOOTSTRAP_CONFIG`; killing the child is how a client
restarts. The harness talks to it in JSON lines on stdin/stdout:

- `{"op": "call", "host": H, "timeout": T, "method": M}`: one unary RPC of method M (default
  `grpc_echo.ECHO_METHOD`) on the channel `xds:///H` (one
  channel per hostname, kept open across calls as a real client keeps it, so it meets updates,
  not fresh subscriptions). The answer is the status code name, the echo reply (which pod) or
  the error details.
- `{"op": "calls", "calls": [[H, M, T], ...]}`: those RPCs all at once (each as `call`), so
  a batch costs its longest deadline, not their sum; the answers in order.
- `{"op": "csds"}`: the client's own view of every resource it subscribed to (CSDS, from
  `grpc._cython.cygrpc.dump_xds_configs()`): type, name, version, status (REQUESTED, ACKED,
  NACKED, DOES_NOT_EXIST, ...) and the NACK's error.
- `{"op": "forget", "host": H}`: close that hostname's channel (the client unsubscribes).
"""

from __future__ import annotations

import collections
import json
import os
import selectors
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

__all__ = ["CsdsResource", "GrpcOutcome", "ProxylessClient", "ProxylessError", "bootstrap"]


class ProxylessError(RuntimeError):
    """The client process died or did not answer in time; carries its last stderr lines."""


@attrs.frozen
class GrpcOutcome:
    """What one RPC got: `code` is a `grpc.StatusCode` name; `pod` the echo pod that answered
    (OK only)."""

    code: str
    pod: str = ""
    service: str = ""
    details: str = ""


@attrs.frozen
class CsdsResource:
    type_url: str
    name: str
    version: str
    status: str
    """`ClientResourceStatus` name: REQUESTED, DOES_NOT_EXIST, ACKED, NACKED, ..."""
    error: str = ""

    @property
    def type_name(self) -> str:
        return self.type_url.rsplit(".", 1)[-1]


def bootstrap(server_uri: str, node_id: str, metadata: Mapping[str, str]) -> dict[str, Any]:
    """gRPC's xDS bootstrap: one insecure SotW xDS v3 server, the node and its metadata."""
    return {
        "xds_servers": [
            {
                "server_uri": server_uri,
                "channel_creds": [{"type": "insecure"}],
                "server_features": ["xds_v3"],
            }
        ],
        "node": {"id": node_id, "metadata": dict(metadata)},
    }


class ProxylessClient:
    """One proxyless gRPC client process; `start`, ask, `stop` (idempotent, kills the child)."""

    def __init__(
        self, server_uri: str, node_id: str, metadata: Mapping[str, str] | None = None
    ) -> None:
        self._bootstrap = bootstrap(server_uri, node_id, metadata or {})
        self._process: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self._stderr: collections.deque[str] = collections.deque(maxlen=40)
        self._stderr_thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> ProxylessClient:
        if self._process is not None:
            return self
        env = dict(os.environ)
        env["GRPC_XDS_BOOTSTRAP_CONFIG"] = json.dumps(self._bootstrap)
        env.setdefault("GRPC_VERBOSITY", "ERROR")
        env["GRPC_ENABLE_FORK_SUPPORT"] = "false"
        process = subprocess.Popen(
            [sys.executable, "-m", "harness.loopback.proxyless"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self._process = process
        self._buffer = b""
        self._stderr_thread = threading.Thread(
            target=self._drain_stderr, args=(process,), name="proxyless-stderr", daemon=True
        )
        self._stderr_thread.start()
        self._ask({"op": "hello"}, timeout=30.0)
        return self

    def call(self, host: str, timeout: float = 1.0, method: str | None = None) -> GrpcOutcome:
        """One RPC to `xds:///<host>`; `method` is its path, `/service/method`."""
        command: dict[str, Any] = {"op": "call", "host": host, "timeout": timeout}
        if method is not None:
            command["method"] = method
        return _outcome(self._ask(command, timeout + 5.0))

    def calls(self, calls: Sequence[tuple[str, str, float]]) -> tuple[GrpcOutcome, ...]:
        """The RPCs (host, method, timeout) sent side by side; their outcomes in order."""
        if not calls:
            return ()
        longest = max(timeout for _, _, timeout in calls)
        answer = self._ask({"op": "calls", "calls": [list(item) for item in calls]}, longest + 5)
        return tuple(_outcome(item) for item in answer["outcomes"])

    def csds(self) -> tuple[CsdsResource, ...]:
        answer = self._ask({"op": "csds"}, 5.0)
        return tuple(
            CsdsResource(
                type_url=str(entry["type_url"]),
                name=str(entry["name"]),
                version=str(entry["version"]),
                status=str(entry["status"]),
                error=str(entry.get("error", "")),
            )
            for entry in answer["resources"]
        )

    def forget(self, host: str) -> None:
        self._ask({"op": "forget", "host": host}, 5.0)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait(10)
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()
        if self._stderr_thread is not None:
            self._stderr_thread.join(5)

    def __enter__(self) -> ProxylessClient:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ plumbing

    def _drain_stderr(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            self._stderr.append(line.decode(errors="replace").rstrip())

    def _failed(self, why: str) -> ProxylessError:
        tail = "\n".join(list(self._stderr)[-10:])
        return ProxylessError(f"proxyless client: {why}" + (f"\n{tail}" if tail else ""))

    def _ask(self, command: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        process = self._process
        if process is None or process.stdin is None or process.stdout is None:
            raise self._failed("not started")
        try:
            process.stdin.write(json.dumps(command).encode() + b"\n")
            process.stdin.flush()
        except OSError as error:
            raise self._failed(f"exited ({error})") from error
        line = self._read_line(process, timeout)
        answer = json.loads(line)
        if not isinstance(answer, dict) or "error" in answer:
            raise self._failed(f"could not {command.get('op')}: {answer}")
        return answer

    def _read_line(self, process: subprocess.Popen[bytes], timeout: float) -> bytes:
        assert process.stdout is not None
        deadline = time.monotonic() + timeout
        descriptor = process.stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(descriptor, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._failed(f"no answer within {timeout:.1f} s")
                if not selector.select(remaining):
                    continue
                chunk = os.read(descriptor, 65536)
                if not chunk:
                    raise self._failed(f"exited with {process.wait(5)}")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line


def _outcome(answer: Mapping[str, Any]) -> GrpcOutcome:
    return GrpcOutcome(
        code=str(answer["code"]),
        pod=str(answer.get("pod", "")),
        service=str(answer.get("service", "")),
        details=str(answer.get("details", "")),
    )


# ---------------------------------------------------------------------- the child process


def _serve() -> None:
    import grpc
    from envoy.admin.v3 import config_dump_shared_pb2
    from envoy.service.status.v3 import csds_pb2
    from grpc._cython import cygrpc  # type: ignore[import-untyped]

    from harness.loopback.grpc_echo import ECHO_METHOD, GrpcEchoReply

    channels: dict[str, grpc.Channel] = {}

    def channel_of(host: str) -> grpc.Channel:
        channel = channels.get(host)
        if channel is None:
            channel = channels[host] = grpc.insecure_channel(f"xds:///{host}")
        return channel

    def call(host: str, timeout: float, method: str) -> dict[str, Any]:
        return result(channel_of(host).unary_unary(method).future(b"", timeout=timeout))

    def calls(items: list[Any]) -> dict[str, Any]:
        futures = [
            channel_of(str(host)).unary_unary(str(method)).future(b"", timeout=float(timeout))
            for host, method, timeout in items
        ]
        return {"outcomes": [result(future) for future in futures]}

    def result(future: Any) -> dict[str, Any]:
        try:
            body = future.result()
        except grpc.RpcError as error:
            code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
            details = error.details() if hasattr(error, "details") else str(error)
            return {"code": code.name, "details": details or ""}
        try:
            reply = GrpcEchoReply.from_bytes(body)
        except ValueError as error:
            return {"code": "OK", "details": str(error)}
        return {"code": "OK", "pod": reply.pod, "service": reply.service}

    def csds() -> dict[str, Any]:
        response = csds_pb2.ClientStatusResponse.FromString(cygrpc.dump_xds_configs())
        resources = []
        for config in response.config:
            for entry in config.generic_xds_configs:
                resources.append(
                    {
                        "type_url": entry.type_url,
                        "name": entry.name,
                        "version": entry.version_info,
                        "status": config_dump_shared_pb2.ClientResourceStatus.Name(
                            entry.client_status
                        ),
                        "error": entry.error_state.details if entry.HasField("error_state") else "",
                    }
                )
        return {"resources": resources}

    for line in sys.stdin:
        try:
            command = json.loads(line)
            op = command.get("op")
            if op == "hello":
                answer: dict[str, Any] = {"ok": True}
            elif op == "call":
                method = str(command.get("method", ECHO_METHOD))
                answer = call(str(command["host"]), float(command["timeout"]), method)
            elif op == "calls":
                answer = calls(list(command["calls"]))
            elif op == "csds":
                answer = csds()
            elif op == "forget":
                channel = channels.pop(str(command["host"]), None)
                if channel is not None:
                    channel.close()
                answer = {"ok": True}
            else:
                answer = {"error": f"unknown op {op!r}"}
        except (ValueError, KeyError, TypeError) as error:
            answer = {"error": f"bad command: {error}"}
        except Exception as error:  # answer the harness rather than die mid-conversation
            answer = {"error": f"{type(error).__name__}: {error}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    for channel in channels.values():
        channel.close()


if __name__ == "__main__":
    _serve()
