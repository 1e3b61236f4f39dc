"""The proof that the wire decoder is right: real Envoy, the real xDS server, the relay's tap.

Every request and response the server's own exchange log records must be decoded from the
relay's bytes, on the matching stream, in the same order, with no DecodeProblem, in both xDS
modes, across a publish, a change, a change while held, and a cut. (Using the server's log is
fine here: this test judges the decoder. The monitor itself never reads it.)
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator

import attrs
import pytest

from harness.lockstep.monitor import (
    TYPE_SHORT,
    ConnectionClosed,
    DecodeProblem,
    GrpcMessage,
    HoldChanged,
    StreamEnded,
    StreamKey,
    WireEvent,
    WireRecorder,
    XdsRequest,
    decode,
)
from harness.loopback import AdsServer, EnvoyBootstrap, EnvoyProcess, XdsMode
from harness.loopback.relay import TcpRelay
from sut.xds import Resource, Snapshot, SnapshotCache, XdsServer
from tests.xds.builders import route_configuration, world

pytestmark = pytest.mark.envoy

NODE = "wire-test"
Seen = tuple[str, str, str, tuple[str, ...]]  # direction, type, nonce, names


def snapshot(marker: str, *, second_listener: bool = False, timeout_ms: int = 250) -> Snapshot:
    routes: dict[str, tuple[str, ...]] = {"main": ("app",)}
    if second_listener:
        routes["extra"] = ("app", "api")
    return world(
        routes,
        endpoints={"app": (9001,), "api": (9002,)},
        cluster_timeouts={"app": timeout_ms},
        marker=marker,
    )


@attrs.define
class Rig:
    cache: SnapshotCache
    server: XdsServer
    relay: TcpRelay
    recorder: WireRecorder
    envoy: EnvoyProcess
    events: list[WireEvent] = attrs.Factory(list)

    def publish(self, snapshot: Snapshot) -> None:
        self.cache.set_snapshot(NODE, snapshot)
        assert self.server.wait_converged(NODE, snapshot.version, 10), self.describe()

    def drain(self) -> list[WireEvent]:
        self.events += self.recorder.drain()
        return self.events

    def describe(self) -> str:
        return "\n".join(e.describe() for e in self.server.exchange_log()[-30:])

    def server_view(self) -> list[dict[str, list[Seen]]]:
        streams: dict[int, dict[str, list[Seen]]] = defaultdict(lambda: defaultdict(list))
        for exchange in self.server.exchange_log():
            if exchange.direction in ("request", "response"):
                seen = (exchange.direction, exchange.type_short, exchange.nonce, exchange.names)
                streams[exchange.stream_id][exchange.direction].append(seen)
        return [dict(streams[stream_id]) for stream_id in sorted(streams)]

    def wire_view(self) -> list[dict[str, list[Seen]]]:
        streams: dict[StreamKey, dict[str, list[Seen]]] = defaultdict(lambda: defaultdict(list))
        for event in self.drain():
            if not isinstance(event, GrpcMessage):
                continue
            message = decode(event)
            assert not isinstance(message, DecodeProblem), message
            short = TYPE_SHORT[message.type_url]
            if isinstance(message, XdsRequest):
                names = tuple(sorted(message.resource_names))
                seen = ("request", short, message.response_nonce, names)
            else:
                names = tuple(sorted(resource.name for resource in message.resources))
                seen = ("response", short, message.nonce, names)
            streams[message.stream][seen[0]].append(seen)
        return [dict(streams[key]) for key in sorted(streams)]

    def assert_wire_matches_the_server(self, *, from_stream: int = 0) -> None:
        """Wait until the tap has seen all the server logged (it may trail by an event).

        Streams before `from_stream` (in opening order) are left out of the comparison.
        """

        def matching() -> bool:
            return self.wire_view()[from_stream:] == self.server_view()[from_stream:]

        self.relay.wait_until(lambda _: matching(), 5)
        assert not [e for e in self.drain() if isinstance(e, DecodeProblem)]
        assert self.wire_view()[from_stream:] == self.server_view()[from_stream:]


@contextlib.contextmanager
def start_rig(mode: XdsMode) -> Iterator[Rig]:
    cache = SnapshotCache()
    recorder = WireRecorder()
    with XdsServer(cache) as server, TcpRelay(("127.0.0.1", server.port), tap=recorder) as relay:
        first = snapshot("one")
        cache.set_snapshot(NODE, first)
        ads = AdsServer(relay.address, relay.port, mode=mode, initial_fetch_timeout=5)
        with EnvoyProcess(EnvoyBootstrap(node_id=NODE, ads=ads)) as envoy:
            envoy.wait_ready(10)
            rig = Rig(cache, server, relay, recorder, envoy)
            assert server.wait_converged(NODE, first.version, 10), rig.describe()
            yield rig


@pytest.mark.parametrize("mode", ["delta", "sotw"])
def test_every_exchange_the_server_logged_is_decoded_from_the_wire(mode):
    with start_rig(mode) as rig:
        rig.assert_wire_matches_the_server()

        # A change: new RouteConfiguration content, a new listener and route, a new cluster.
        rig.publish(snapshot("two", second_listener=True))
        rig.assert_wire_matches_the_server()

        # A change while held: the responses wait in the relay and count when released.
        rig.relay.hold()
        held = snapshot("three", second_listener=True, timeout_ms=400)
        since = rig.server.last_seq()
        rig.cache.set_snapshot(NODE, held)

        def answered_while_held() -> list[str]:
            log = rig.server.exchange_log(since)
            return [e.nonce for e in log if e.direction == "response"]

        assert rig.server.wait_for(lambda: bool(answered_while_held()), 10), rig.describe()
        nonces_held = answered_while_held()
        rig.relay.release()
        assert rig.server.wait_converged(NODE, held.version, 10), rig.describe()
        rig.assert_wire_matches_the_server()
        released = next(e for e in rig.events if isinstance(e, HoldChanged) and not e.held)
        for event in rig.events:
            if isinstance(event, GrpcMessage) and event.direction == "to_client":
                response = decode(event)
                if getattr(response, "nonce", None) in nonces_held:
                    assert event.at >= released.at  # held bytes count when released

        # A rejected RouteConfiguration: Envoy NACKs it; then a valid one.
        rejected = route_configuration("main", "app")
        rejected.virtual_hosts[0].routes[0].match.ClearField("prefix")
        rejected.virtual_hosts[0].routes[0].match.safe_regex.regex = "(?=lookahead)"
        rig.cache.set_snapshot(NODE, held.replacing(Resource.from_message(rejected)))

        def nacked() -> bool:
            return any(e.error_detail for e in rig.server.exchange_log(since))

        assert rig.server.wait_for(nacked, 10), rig.describe()
        rig.publish(held)
        rig.assert_wire_matches_the_server()
        nacks = [
            message
            for event in rig.events
            if isinstance(event, GrpcMessage)
            and isinstance(message := decode(event), XdsRequest)
            and message.error_detail
        ]
        assert [n.type_short for n in nacks] == ["RDS"]

        # A cut: Envoy reconnects on a new connection and a new stream.
        streams_before = {s.stream_id for s in rig.server.stream_statuses(NODE)}
        assert rig.relay.cut() == 1

        def reconnected() -> bool:
            statuses = rig.server.stream_statuses(NODE)
            return any(
                s.stream_id not in streams_before
                and s.converged
                and s.snapshot_version == held.version
                for s in statuses
            )

        assert rig.server.wait_for(reconnected, 10), rig.describe()
        rig.publish(snapshot("four"))  # and a change on the new stream
        rig.assert_wire_matches_the_server()

        events = rig.events
        assert len(rig.server_view()) == 2
        closed = next(e for e in events if isinstance(e, ConnectionClosed))
        (cut_stream,) = [e for e in events if isinstance(e, StreamEnded) and e.at <= closed.at]
        assert cut_stream.reason.startswith("connection closed")
        messages = [e for e in events if isinstance(e, GrpcMessage)]
        assert {m.connection for m in messages} == {1, 2}


def is_prefix(shorter: list[Seen], longer: list[Seen]) -> bool:
    return longer[: len(shorter)] == shorter


@pytest.mark.parametrize("mode", ["delta", "sotw"])
def test_bytes_lost_on_a_cut_are_never_decoded(mode):
    """Cut while held with responses in flight: the server logged them, Envoy never got them."""
    with start_rig(mode) as rig:
        rig.relay.hold()
        since = rig.server.last_seq()
        rig.cache.set_snapshot(NODE, snapshot("lost", second_listener=True))

        def answered() -> bool:
            return any(e.direction == "response" for e in rig.server.exchange_log(since))

        assert rig.server.wait_for(answered, 10), rig.describe()
        rig.relay.cut()
        rig.relay.release()
        current = rig.cache.get_snapshot(NODE)
        assert current is not None
        assert rig.server.wait_converged(NODE, current.version, 10), rig.describe()
        rig.assert_wire_matches_the_server(from_stream=1)
        wire, server = rig.wire_view(), rig.server_view()
        assert len(wire) == len(server) == 2
        lost = [x for x in server[0]["response"] if x not in wire[0].get("response", [])]
        assert lost, "the held response was lost with the connection"
        for direction in ("request", "response"):
            assert is_prefix(wire[0].get(direction, []), server[0].get(direction, []))
