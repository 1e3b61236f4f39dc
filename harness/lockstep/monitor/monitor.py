"""The independent xDS protocol monitor: the rules of `rules.py` over the bytes on the wire.

It taps the relay (`WireRecorder`), decodes every message per stream in order, rebuilds what
each client holds and asks for (`view.py`), and judges each message as it is processed. Besides
the wire it knows only what the harness itself did: what it published and when (`published`),
when a control plane started (`control_plane_started`), which contents it made invalid on
purpose (`rejected`). The server's own logs and introspection are never read: a buggy server's
log is part of the bug.

Timing (rule `answered`): an obligation's clock starts when the client subscribed, or later when
the node first had something published in the server's lifetime (nothing published: a
fail-closed extension since the control plane started, so nothing to answer), or for a SotW
RouteConfiguration or ClusterLoadAssignment when the name appeared in the published snapshot
(SotW cannot say a name does not exist, so absent names are exempt). The clock stops while the
relay holds the connection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

import attrs

from harness.lockstep.monitor import rules
from harness.lockstep.monitor.messages import (
    ENDPOINT,
    ROUTE,
    TYPE_SHORT,
    References,
    StreamKey,
    WireResource,
    XdsRequest,
    XdsResponse,
    decode,
    references,
)
from harness.lockstep.monitor.report import ExchangeLog, describe_request, describe_response
from harness.lockstep.monitor.rest import Expected, stream_differences
from harness.lockstep.monitor.timeline import Published, Timeline
from harness.lockstep.monitor.view import FULL_STATE_TYPES, Nack, Obligation, StreamView, TypeView
from harness.lockstep.monitor.wire import (
    ConnectionClosed,
    ConnectionOpened,
    DecodeProblem,
    GrpcMessage,
    HoldChanged,
    StreamEnded,
    WireRecorder,
)
from harness.lockstep.verdict import Strength, Violation

__all__ = ["Finding", "ProtocolMonitor", "Published"]


@attrs.frozen
class Finding:
    rule: str
    strength: Strength
    summary: str
    seq: int
    """The log entry of the message that broke the rule."""


class ProtocolMonitor:
    """Feed it the relay (`recorder` is the tap), tell it what the harness does, ask `judge`."""

    def __init__(
        self,
        *,
        answer_bound: float,
        client_versions: Callable[[str], Mapping[str, str]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`client_versions(type_url)` reads, from the client itself (Envoy's config_dump), the
        version of each Listener or Cluster it holds: after a NACK of a SotW set, what it kept
        of that set is whatever it holds at the NACKed version."""
        self.recorder = WireRecorder()
        self.answer_bound = answer_bound
        self._clock = clock
        self._client_versions = client_versions
        self._lock = threading.RLock()
        self.timeline = Timeline()
        self._rejected: set[str] = set()
        """Digests of contents the harness made invalid on purpose."""
        self._streams: dict[StreamKey, StreamView] = {}
        self._connections: dict[int, int] = {}
        """Connection -> the control-plane lifetime it was opened in."""
        self._identity = rules.IdentityMap()
        self._received: dict[tuple[str, str, str], WireResource] = {}
        """What the node received under (type, name, version), newest delivery."""
        self._findings: list[Finding] = []
        self._log = ExchangeLog()
        self.messages = 0
        self.nacks: list[tuple[StreamKey, Nack]] = []

    # ---------------------------------------------------- what the harness does

    def control_plane_started(self, at: float | None = None) -> None:
        with self._lock:
            self.timeline.control_plane_started(self._clock() if at is None else at)

    def published(self, publication: Published) -> None:
        with self._lock:
            self.timeline.published(publication)

    def rejected(self, body: bytes) -> None:
        """A content the harness published knowing the client must reject it."""
        with self._lock:
            self._rejected.add(rules.digest(body))

    # ----------------------------------------------------------------- the wire

    def sync(self) -> None:
        """Decode and judge everything the relay delivered since the last call."""
        with self._lock:
            for event in self.recorder.drain():
                if isinstance(event, GrpcMessage):
                    self._message(event)
                elif isinstance(event, ConnectionOpened):
                    self._connections[event.connection] = self.timeline.lifetime_at(event.at)
                    self._note(f"connection {event.connection} opened")
                elif isinstance(event, StreamEnded):
                    self._end(StreamKey(event.connection, event.stream), event.at, event.reason)
                elif isinstance(event, ConnectionClosed):
                    self.connection_closed(event.connection, event.at)
                elif isinstance(event, HoldChanged):
                    self.hold_changed(event.held, event.at)
                elif isinstance(event, DecodeProblem):
                    self._find("wire", Strength.MUST, f"undecodable bytes: {event.detail}")

    def hold_changed(self, held: bool, at: float) -> None:
        with self._lock:
            self.timeline.hold_changed(held, at)
            self._note("relay holds the connection" if held else "relay releases it")

    def connection_closed(self, connection: int, at: float) -> None:
        with self._lock:
            for key in [k for k in self._streams if k.connection == connection]:
                self._end(key, at, "connection closed")
            self._note(f"connection {connection} closed")

    def _message(self, message: GrpcMessage) -> None:
        decoded = decode(message)
        if isinstance(decoded, DecodeProblem):
            self._find("wire", Strength.MUST, decoded.detail)
            return
        self.observe(decoded)

    def observe(self, decoded: XdsRequest | XdsResponse) -> None:
        """Judge one decoded message (the wire's, or a hand-built one in a test)."""
        self.messages += 1
        stream = self._streams.get(decoded.stream)
        if stream is None:
            stream = self._streams[decoded.stream] = StreamView(
                decoded.stream,
                decoded.delta,
                self._connections.get(
                    decoded.stream.connection, self.timeline.lifetime_at(decoded.at)
                ),
                decoded.at,
            )
        if isinstance(decoded, XdsRequest):
            self._note(describe_request(decoded))
            self._request(stream, decoded)
        else:
            self._note(describe_response(decoded))
            self._response(stream, decoded)

    # ----------------------------------------------------------------- requests

    def _request(self, stream: StreamView, request: XdsRequest) -> None:
        stream.node_id = stream.node_id or request.node_id
        view = stream.of(request.type_url)
        first = not view.opened
        view.opened = True
        if request.response_nonce in stream.pending:
            self._settle(stream, request)
        if request.delta:
            self._delta_subscription(view, request, first)
        else:
            self._sotw_subscription(view, request, first)

    def _settle(self, stream: StreamView, request: XdsRequest) -> None:
        nack = request.error_detail is not None
        kept: frozenset[str] = frozenset()
        pending = stream.pending.get(request.response_nonce)
        if nack and pending is not None and pending.previous_set is not None:
            kept = self._kept(pending.response)
        settled = stream.settle(request.response_nonce, nack, kept)
        if not nack or settled is None:
            return
        view = stream.of(request.type_url)
        record = Nack(
            request.at, settled.response, request.error_detail or "", frozenset(view.subscribed)
        )
        stream.nacks.append(record)
        self.nacks.append((stream.key, record))
        carried = {rules.digest(item.body) for item in settled.response.resources if item.body}
        if not carried & self._rejected:
            self._find(
                "nack",
                Strength.MUST,
                f"Envoy NACKed {settled.response.type_short} nonce {settled.response.nonce!r},"
                f" which carries nothing the harness made invalid: {record.detail[:200]}",
            )

    def _kept(self, response: XdsResponse) -> frozenset[str]:
        """Envoy applies the valid Listeners and Clusters of a rejected SotW set."""
        if self._client_versions is None:
            return frozenset()
        try:
            versions = self._client_versions(response.type_url)
        except Exception:  # the client's view is a refinement; without it nothing was kept
            return frozenset()
        return frozenset(
            item.name
            for item in response.resources
            if versions.get(item.name) == response.version_info
        )

    def _sotw_subscription(self, view: TypeView, request: XdsRequest, first: bool) -> None:
        names = set(request.resource_names)
        if "*" in names or (not names and not view.explicit and view.type_url in FULL_STATE_TYPES):
            view.wildcard = True
        else:
            view.wildcard = False
        view.explicit = view.explicit or bool(names)
        names.discard("*")
        dropped = view.subscribed - names
        view.unsubscribe(dropped)
        added = view.subscribe(names, request.at)
        if first:
            added = set(names)
            if view.wildcard and not request.version_info:
                view.obligations[None] = Obligation(None, request.at)
        for name in added:
            view.obligations[name] = Obligation(name, request.at)

    def _delta_subscription(self, view: TypeView, request: XdsRequest, first: bool) -> None:
        subscribe = set(request.resource_names)
        unsubscribe = set(request.unsubscribe)
        if first and ((not subscribe and not unsubscribe) or "*" in subscribe):
            view.wildcard = True
            if not request.initial_resource_versions:
                view.obligations[None] = Obligation(None, request.at)
        if "*" in subscribe:
            view.wildcard = True
        if "*" in unsubscribe:
            view.wildcard = False
        view.explicit = view.explicit or bool(subscribe)
        for name, version in request.initial_resource_versions:
            view.reported[name] = version
        view.unsubscribe(unsubscribe - {"*"})
        view.subscribe(subscribe - {"*"}, request.at)
        for name in subscribe - {"*"}:
            view.obligations[name] = Obligation(name, request.at, view.reported.get(name))

    # ---------------------------------------------------------------- responses

    def _response(self, stream: StreamView, response: XdsResponse) -> None:
        view = stream.of(response.type_url)
        for problem in rules.nonce_findings(stream, response):
            self._find("nonce", Strength.MUST, problem)
        stream.nonces.add(response.nonce)
        for resource in response.resources:
            found = self._identity.record(stream.lifetime, resource)
            if found is not None:
                rule = (
                    "resource-identity"
                    if found[1] is Strength.MUST
                    else "resource-identity-across-restarts"
                )
                self._find(rule, found[1], found[0])
        for problem in rules.unasked_findings(view, response):
            self._find("nothing-unasked", Strength.SHOULD, problem)
        self._check_resend(stream, view, response)
        for problem in rules.make_findings(stream, response):
            self._find("make-before-break", Strength.SHOULD, problem)
        removed = rules.removed_names(stream, response)
        for problem in rules.break_findings(stream, response, removed, self._resolve):
            self._find("make-before-break", Strength.SHOULD, problem)
        for problem in rules.removal_findings(view, response):
            self._find("removals", Strength.SHOULD, problem)
        self._answer(stream, view, response)
        stream.deliver(response)
        for resource in response.resources:
            if resource.body is not None:
                self._received[(resource.type_url, resource.name, resource.version)] = resource

    def _check_resend(self, stream: StreamView, view: TypeView, response: XdsResponse) -> None:
        """Rule `nack-resend` (MUST; xds_protocol.rst "ACK/NACK and resource type instance
        version", "When to send an update"). A new stream cannot know of an old one's NACK."""
        if not stream.nacks:
            return
        shape = rules.fingerprint(response)
        for nack in stream.nacks:
            if rules.fingerprint(nack.response) != shape:
                continue
            republished = self.timeline.republished(stream.lifetime, nack.at, response.at)
            newly = any(
                view.subscribed_at.get(item.name, 0.0) > nack.at for item in response.resources
            )
            if not republished and not newly:
                self._find(
                    "nack-resend",
                    Strength.MUST,
                    f"{response.type_short} response {response.nonce!r} repeats the response"
                    f" {nack.response.nonce!r} the client NACKed, though nothing was published"
                    " and nothing newly subscribed since",
                )
                return

    def _resolve(self, type_url: str, name: str, held: str | WireResource) -> References | None:
        if isinstance(held, WireResource):
            return references(held)
        known = self._received.get((type_url, name, held))
        return references(known) if known is not None else None

    # ------------------------------------------------------------- obligations

    def _answer(self, stream: StreamView, view: TypeView, response: XdsResponse) -> None:
        """Rule `answered` (MUST; xds_protocol.rst "How the client specifies what resources to
        return", "Knowing When a Requested Resource Does Not Exist", "Subscribing to
        Resources"): discharge what this response answers; a late answer is a finding. Delta:
        the resource, its name in removed_resources, or a Resource with no body; SotW Listener
        and Cluster: any response of the type (a name left out does not exist)."""
        answered: list[str | None] = [None]
        if not response.delta and response.type_url in FULL_STATE_TYPES:
            answered += list(view.obligations)
        else:
            answered += [item.name for item in response.resources]
            answered += list(response.removed)
        for name in answered:
            obligation = view.obligations.pop(name, None)
            if obligation is not None:
                self._late(stream, view, obligation, response.at, answered=True)

    def _end(self, key: StreamKey, at: float, reason: str) -> None:
        stream = self._streams.pop(key, None)
        if stream is None:
            return
        stream.ended = True
        self._note(f"stream {key} ended: {reason}")
        for view in stream.types.values():
            for obligation in list(view.obligations.values()):
                self._late(stream, view, obligation, at, answered=False)

    def _late(
        self,
        stream: StreamView,
        view: TypeView,
        obligation: Obligation,
        now: float,
        *,
        answered: bool,
    ) -> bool:
        """Was `obligation` overdue at `now`? Reports it once if so."""
        start = self._clock_start(stream, view, obligation)
        if start is None:
            return False
        waited = now - start - self.timeline.held_between(start, now)
        if waited <= self.answer_bound:
            return False
        what = "the wildcard subscription" if obligation.name is None else repr(obligation.name)
        how = f"answered after {waited:.2f} s" if answered else f"unanswered for {waited:.2f} s"
        self._find(
            "answered",
            Strength.MUST,
            f"{TYPE_SHORT.get(view.type_url, view.type_url)} {what} on stream {stream.key}"
            f" {how} (bound {self.answer_bound:g} s, the clock stopped while held)",
        )
        return True

    def _clock_start(
        self, stream: StreamView, view: TypeView, obligation: Obligation
    ) -> float | None:
        """When the server had what it needed to answer; None while it is exempt."""
        mine = self.timeline.of_lifetime(stream.lifetime)
        if not mine:
            return None  # nothing published for the node in this server's lifetime
        start = max(obligation.since, mine[0].at)
        name = obligation.name
        if name is None:
            return start
        latest = mine[-1].resources
        present = (view.type_url, name) in latest
        if not stream.delta and view.type_url in (ROUTE, ENDPOINT):
            if not present:
                return None  # SotW cannot say it does not exist; the client times out
            appeared = mine[-1].at
            for publication in reversed(mine):
                if (view.type_url, name) not in publication.resources:
                    break
                appeared = publication.at
            start = max(start, appeared)
        if obligation.reported_version is not None:
            # The client said what it holds: if that was current when it subscribed (or at the
            # first publication after), there is nothing to answer; later changes are updates,
            # which convergence judges, not this subscription.
            held = self._received.get((view.type_url, name, obligation.reported_version))
            then = [p for p in mine if p.at <= obligation.since][-1:] or mine[:1]
            body = then[0].resources.get((view.type_url, name))
            if held is not None and held.body == body and body is not None:
                return None
        return start

    def overdue_at(self) -> float | None:
        """When the earliest open obligation becomes overdue (None: nothing is open)."""
        with self._lock:
            earliest: float | None = None
            for stream in self._streams.values():
                for view in stream.types.values():
                    for obligation in view.obligations.values():
                        start = self._clock_start(stream, view, obligation)
                        if start is None:
                            continue
                        held = self.timeline.held_between(start, self._clock())
                        due = start + self.answer_bound + held
                        earliest = due if earliest is None else min(earliest, due)
            return earliest

    def settle(self, timeout: float) -> None:
        """Wait (polling the wire) until no obligation is open or the earliest is overdue."""
        deadline = self._clock() + timeout
        while True:
            self.sync()
            due = self.overdue_at()
            now = self._clock()
            if due is None or now > due or now > deadline:
                return
            time.sleep(min(0.01, max(due - now, 0.001)))

    def _judge_open(self, now: float) -> None:
        for stream in list(self._streams.values()):
            for view in stream.types.values():
                for name, obligation in list(view.obligations.items()):
                    if self._late(stream, view, obligation, now, answered=False):
                        del view.obligations[name]

    # ------------------------------------------------------------------ verdicts

    def judge(self, *, strict: bool) -> list[Violation]:
        """Every finding since the last call, as violations (SHOULDs only when `strict`)."""
        with self._lock:
            self.sync()
            self._judge_open(self._clock())
            findings, self._findings = self._findings, []
        by_rule: dict[tuple[str, Strength], list[Finding]] = {}
        for finding in findings:
            if finding.strength is Strength.SHOULD and not strict:
                continue
            by_rule.setdefault((finding.rule, finding.strength), []).append(finding)
        violations = []
        for (rule, strength), found in by_rule.items():
            details = [finding.summary for finding in found[:6]]
            details += self.context(found[0].seq)
            violations.append(
                Violation(
                    f"protocol:{rule}",
                    f"{len(found)} violation(s) of: {rules.RULES[rule].text}"
                    if rule in rules.RULES
                    else f"{len(found)} problem(s) decoding the wire",
                    tuple(details),
                    strength,
                )
            )
        return violations

    def context(self, seq: int) -> list[str]:
        """The decoded exchange around log entry `seq`."""
        with self._lock:
            return self._log.around(seq)

    def log(self, since: int = 0) -> list[str]:
        with self._lock:
            return self._log.lines(since)

    @property
    def last_seq(self) -> int:
        return self._log.last_seq

    # --------------------------------------------------------- client's side

    def subscribed(self, type_url: str) -> set[str]:
        """Names the live streams subscribe to, by type (for the harness's own operations)."""
        with self._lock:
            self.sync()
            return {
                name
                for stream in self._streams.values()
                if type_url in stream.types
                for name in stream.types[type_url].subscribed
            }

    def delivered(self, type_url: str, name: str, version: str) -> bytes | None:
        """The content the client was last sent under (type, name, version), if it was."""
        with self._lock:
            self.sync()
            known = self._received.get((type_url, name, version))
            return known.body if known is not None else None

    # -------------------------------------------------------------- convergence

    def live_streams(self, kind: str | None = None) -> set[StreamKey]:
        """The streams open on the wire (`kind`: only those that opened that type, e.g. "RDS")."""
        with self._lock:
            self.sync()
            return {
                key
                for key, stream in self._streams.items()
                if kind is None or any(TYPE_SHORT.get(t) == kind for t in stream.types)
            }

    def at_rest(self, expected: Expected) -> list[str]:
        """Every way in which the client is not at rest on `expected` (`rest`): no live stream,
        a response not ACKed or NACKed yet, content held that differs from it; empty when at
        rest. Read from the wire alone, never from the server."""
        with self._lock:
            self.sync()
            if not self._streams:
                return ["no xDS stream is open"]
            problems: list[str] = []
            for _, stream in sorted(self._streams.items()):
                problems += stream_differences(stream, expected, self._received)
            return problems

    def wait_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Wait until `condition` holds, re-testing it each time the relay delivers something
        (no polling); False if it still does not after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            if condition():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.recorder.wait_recorded(remaining)

    # ------------------------------------------------------------------- helpers

    def _lifetime_of(self, connection: int, at: float) -> int:
        known = self._connections.get(connection)
        return known if known is not None else self.timeline.lifetime_at(at)

    def _note(self, text: str) -> None:
        self._log.note(text)

    def _find(self, rule: str, strength: Strength, summary: str) -> None:
        self._findings.append(Finding(rule, strength, summary, self._log.last_seq))
