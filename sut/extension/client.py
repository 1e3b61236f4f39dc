"""The control plane's side of the extension service: call a hook, retry, map every failure.

This is the one place where gRPC exceptions become `ExtensionError(hook, kind, message)`:
UNAVAILABLE -> "unavailable" (retried, Envoy Gateway's policy: 4 attempts, backoff 100 ms
doubling to at most 1 s), DEADLINE_EXCEEDED -> "deadline", any other status -> "error", a
structurally broken reply -> "invalid-output" (see replies.py). With `fail_open` a failed hook
returns "no change" (its inputs) instead of raising, as Envoy Gateway's failOpen does.

Every hook takes an optional `Budget` shared by the calls of one translation: an attempt gets
min(deadline, what remains of it), a retry whose backoff the budget cannot cover is not made, and
once it is spent a call fails at once, without an RPC, as "deadline" (fail-open applies as usual).

Replies are received as raw bytes and parsed here, so an unparseable reply is "invalid-output",
not an INTERNAL status invented by the gRPC library. After an UNAVAILABLE the channel is
replaced: gRPC's own reconnect backoff (1 s and growing) would otherwise keep failing calls for a
while after the server is back, and the harness expects the first call after a recovery to work.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import attrs
import grpc
from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3.route_components_pb2 import Route, VirtualHost
from envoy.config.route.v3.route_pb2 import RouteConfiguration
from envoy.extensions.transport_sockets.tls.v3.secret_pb2 import Secret

from sut.errors import ExtensionError, LocalProtocolError
from sut.extension import replies
from sut.extension.budget import Budget
from sut.extension.generated import extension_pb2
from sut.extension.hooks import (
    FailureKind,
    Hook,
    ListenerContext,
    RouteContext,
    TranslateContext,
    TranslateModifyResult,
)

__all__ = [
    "ClientTLS",
    "ExtensionClient",
    "ExtensionSettings",
    "ExtensionStatistics",
    "FailedAttempt",
    "RetryPolicy",
]

_T = TypeVar("_T")
_SERVICE = extension_pb2.DESCRIPTOR.services_by_name["EnvoyGatewayExtension"].full_name


def _positive(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


@attrs.frozen
class RetryPolicy:
    """Retries on UNAVAILABLE only; the wait before retry k (1-based) is
    min(initial_backoff * multiplier**(k-1), max_backoff). No jitter: runs stay reproducible."""

    max_attempts: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    initial_backoff: float = attrs.field(default=0.1, validator=_positive)
    max_backoff: float = attrs.field(default=1.0, validator=_positive)
    multiplier: float = attrs.field(default=2.0, validator=attrs.validators.ge(1.0))

    def backoff(self, retry: int) -> float:
        if retry < 1:
            raise ValueError(f"retry numbers start at 1, got {retry}")
        return float(min(self.initial_backoff * self.multiplier ** (retry - 1), self.max_backoff))


@attrs.frozen
class ClientTLS:
    """Verify the server against this CA (PEM)."""

    ca_certificate: bytes = attrs.field(validator=attrs.validators.instance_of(bytes))
    server_name: str | None = None
    """Name to check the server certificate against, when it differs from the address' host."""


@attrs.frozen
class ExtensionSettings:
    address: str = attrs.field(validator=attrs.validators.instance_of(str))
    """host:port of the extension server."""
    deadline: float = attrs.field(default=1.0, validator=_positive)
    """Seconds each attempt may take (less when the call's `Budget` has less left)."""
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    fail_open: bool = False
    tls: ClientTLS | None = None

    def __attrs_post_init__(self) -> None:
        host, sep, port = self.address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"address must be host:port, got {self.address!r}")


@attrs.frozen
class FailedAttempt:
    """Passed to `on_failed_attempt` after every failed attempt, before any backoff."""

    hook: Hook
    attempt: int
    """1-based."""
    error: ExtensionError
    will_retry: bool


@attrs.frozen
class ExtensionStatistics:
    calls: int
    """Hook calls made (each may take several attempts)."""
    attempts: int
    retries: int
    failures: tuple[tuple[str, int], ...]
    """(kind, count) of calls that failed, sorted by kind."""
    fail_open_passes: int
    """Failed calls answered with "no change" because fail_open was on."""
    last_error: ExtensionError | None

    def failures_of(self, kind: FailureKind | str) -> int:
        return dict(self.failures).get(str(kind), 0)


_KINDS_BY_STATUS = {
    grpc.StatusCode.UNAVAILABLE: FailureKind.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: FailureKind.DEADLINE,
}


def _map_rpc_error(hook: Hook, error: grpc.RpcError) -> ExtensionError:
    code = error.code() if isinstance(error, grpc.Call) else None
    details = (error.details() if isinstance(error, grpc.Call) else None) or str(error)
    kind = _KINDS_BY_STATUS.get(code, FailureKind.ERROR) if code else FailureKind.ERROR
    status = code.name if code else "unknown status"
    return ExtensionError(hook.value, kind.value, f"{status}: {details}")


class ExtensionClient:
    """Calls the hooks of one extension server. Thread-safe; close it (or use `with`)."""

    def __init__(
        self,
        settings: ExtensionSettings,
        *,
        on_failed_attempt: Callable[[FailedAttempt], None] | None = None,
    ) -> None:
        self._settings = settings
        self._on_failed_attempt = on_failed_attempt
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._fail_open = settings.fail_open
        self._channel: grpc.Channel | None = None
        self._calls = 0
        self._attempts = 0
        self._retries = 0
        self._failures: dict[str, int] = {}
        self._fail_open_passes = 0
        self._last_error: ExtensionError | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> ExtensionClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel; a backoff in progress ends at once with "unavailable"."""
        self._closed.set()
        with self._lock:
            channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()

    def connect(self, timeout: float) -> bool:
        """Open the channel and wait until it is connected, as a gateway does at startup, so the
        first hook call's deadline is not spent on the connection; False if it did not connect
        in time (calls then connect on their own, and fail as the server's state says)."""
        try:
            channel = self._current_channel(Hook.POST_TRANSLATE_MODIFY)
        except ExtensionError:
            return False
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            return False
        return True

    @property
    def settings(self) -> ExtensionSettings:
        return self._settings

    @property
    def fail_open(self) -> bool:
        return self._fail_open

    def set_fail_open(self, fail_open: bool) -> None:
        """The harness toggles this at runtime; it applies to calls that start afterwards."""
        self._fail_open = bool(fail_open)

    def statistics(self) -> ExtensionStatistics:
        with self._lock:
            return ExtensionStatistics(
                calls=self._calls,
                attempts=self._attempts,
                retries=self._retries,
                failures=tuple(sorted(self._failures.items())),
                fail_open_passes=self._fail_open_passes,
                last_error=self._last_error,
            )

    # --- hooks ----------------------------------------------------------------------------

    def post_route_modify(
        self, route: Route, context: RouteContext | None = None, *, budget: Budget | None = None
    ) -> Route:
        """The Route as the extension leaves it (the same Route on "no change")."""
        request = replies.route_request(route, context or RouteContext())
        return self._call(
            Hook.POST_ROUTE_MODIFY,
            request,
            lambda raw: replies.read_route_reply(raw, route),
            lambda: route,
            budget,
        )

    def post_virtual_host_modify(
        self, virtual_host: VirtualHost, *, budget: Budget | None = None
    ) -> VirtualHost:
        request = replies.virtual_host_request(virtual_host)
        return self._call(
            Hook.POST_VIRTUAL_HOST_MODIFY,
            request,
            lambda raw: replies.read_virtual_host_reply(raw, virtual_host),
            lambda: virtual_host,
            budget,
        )

    def post_http_listener_modify(
        self,
        listener: Listener,
        context: ListenerContext | None = None,
        *,
        budget: Budget | None = None,
    ) -> Listener:
        request = replies.listener_request(listener, context or ListenerContext())
        return self._call(
            Hook.POST_HTTP_LISTENER_MODIFY,
            request,
            lambda raw: replies.read_listener_reply(raw, listener),
            lambda: listener,
            budget,
        )

    def post_translate_modify(
        self,
        clusters: Iterable[Cluster],
        secrets: Iterable[Secret],
        listeners: Iterable[Listener],
        routes: Iterable[RouteConfiguration],
        context: TranslateContext | None = None,
        *,
        budget: Budget | None = None,
    ) -> TranslateModifyResult:
        """The lists that replace the translation's; the inputs themselves on "no change"."""
        sent = TranslateModifyResult(
            clusters=tuple(clusters),
            secrets=tuple(secrets),
            listeners=tuple(listeners),
            routes=tuple(routes),
        )
        request = replies.translate_request(
            sent.clusters, sent.secrets, sent.listeners, sent.routes, context or TranslateContext()
        )
        return self._call(
            Hook.POST_TRANSLATE_MODIFY,
            request,
            lambda raw: replies.read_translate_reply(raw, sent),
            lambda: sent,
            budget,
        )

    # --- machinery ------------------------------------------------------------------------

    def _call(
        self,
        hook: Hook,
        request: Any,
        read: Callable[[bytes], _T],
        unchanged: Callable[[], _T],
        budget: Budget | None,
    ) -> _T:
        if self._closed.is_set():
            raise LocalProtocolError(f"extension hook {hook} called on a closed ExtensionClient")
        with self._lock:
            self._calls += 1
        payload = request.SerializeToString()
        try:
            raw = self._invoke_with_retries(hook, payload, budget)
            return read(raw)
        except ExtensionError as error:
            fail_open = self._fail_open
            with self._lock:
                self._failures[error.kind] = self._failures.get(error.kind, 0) + 1
                self._last_error = error
                self._fail_open_passes += int(fail_open)
            if fail_open:
                return unchanged()
            raise

    def _invoke_with_retries(self, hook: Hook, payload: bytes, budget: Budget | None) -> bytes:
        policy = self._settings.retry
        attempt = 0
        deadline = self._settings.deadline
        while True:
            if budget is not None and budget.spent:
                detail = f"after attempt {attempt}" if attempt else "no attempt made"
                raise budget.exhausted(hook.value, detail)
            timeout = deadline if budget is None else budget.timeout(deadline)
            attempt += 1
            with self._lock:
                self._attempts += 1
            try:
                return self._invoke(hook, payload, timeout)
            except ExtensionError as error:
                retryable = error.kind == FailureKind.UNAVAILABLE
                wanted = retryable and attempt < policy.max_attempts
                affordable = budget is None or budget.covers(policy.backoff(attempt))
                will_retry = wanted and affordable
                if self._on_failed_attempt is not None:
                    self._on_failed_attempt(FailedAttempt(hook, attempt, error, will_retry))
                if budget is not None and (
                    (wanted and not affordable)
                    or (error.kind == FailureKind.DEADLINE and timeout < deadline)
                ):
                    # The budget, not the per-call policy, ended this call.
                    raise budget.exhausted(
                        hook.value, f"attempt {attempt}: {error.reason}"
                    ) from error
                if not will_retry:
                    raise
                if self._closed.wait(policy.backoff(attempt)):
                    raise ExtensionError(
                        hook.value, FailureKind.UNAVAILABLE.value, "client closed during backoff"
                    ) from error
                with self._lock:
                    self._retries += 1

    def _invoke(self, hook: Hook, payload: bytes, timeout: float) -> bytes:
        channel = self._current_channel(hook)
        method = channel.unary_unary(
            f"/{_SERVICE}/{hook.value}",
            request_serializer=None,
            response_deserializer=None,
        )
        try:
            raw = method(payload, timeout=timeout)
        except grpc.RpcError as rpc_error:
            error = _map_rpc_error(hook, rpc_error)
            if error.kind == FailureKind.UNAVAILABLE:
                self._replace_channel(channel)
            raise error from None
        except ValueError as closed:  # grpc raises ValueError on a channel closed under us
            raise ExtensionError(hook.value, FailureKind.UNAVAILABLE.value, str(closed)) from None
        if not isinstance(raw, bytes):
            raise ExtensionError(
                hook.value, FailureKind.INVALID_OUTPUT.value, f"reply is {type(raw).__name__}"
            )
        return raw

    def _current_channel(self, hook: Hook) -> grpc.Channel:
        with self._lock:
            if self._closed.is_set():
                raise ExtensionError(hook.value, FailureKind.UNAVAILABLE.value, "client closed")
            if self._channel is None:
                self._channel = self._open_channel()
            return self._channel

    def _replace_channel(self, failed: grpc.Channel) -> None:
        with self._lock:
            if self._channel is failed:
                self._channel = None
        failed.close()

    def _open_channel(self) -> grpc.Channel:
        # A local subchannel pool keeps this channel's connection (and its backoff state) its own.
        options: list[tuple[str, Any]] = [("grpc.use_local_subchannel_pool", 1)]
        tls = self._settings.tls
        if tls is None:
            return grpc.insecure_channel(self._settings.address, options=options)
        if tls.server_name is not None:
            options.append(("grpc.ssl_target_name_override", tls.server_name))
        credentials = grpc.ssl_channel_credentials(root_certificates=tls.ca_certificate)
        return grpc.secure_channel(self._settings.address, credentials, options=options)
