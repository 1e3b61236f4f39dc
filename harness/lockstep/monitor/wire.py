"""gRPC messages from the relay's bytes: sans-IO HTTP/2 decoding for a passive observer.

`ConnectionDecoder` turns the bytes of one TCP connection, as the relay delivered them in each
direction, into `GrpcMessage`s (one protobuf message each, with its stream, method and
direction) and `StreamEnded`s. `WireRecorder` is the `RelayTap` that records deliveries cheaply
in the relay thread and decodes them in the caller's thread on `drain()`.

Rules of this module (see WIRE_FACTS.md):

1. Two `h2` connections per TCP connection, created together when it opens: a server-side one
   fed the client's bytes, a client-side one fed the server's. Neither ever sends: whatever
   they want to send is discarded.
2. Each is told what the other side did, so both hold the same stream states: a request's
   HEADERS seen by the server side are sent on the client side (which otherwise rejects the
   server's frames on a stream it did not open); an END_STREAM or RST_STREAM seen by one is
   mirrored on the other. Streams therefore close on both, and h2 forgets them.
3. Flow control is off in effect: the peers' real windows are not ours to judge, so each
   decoder starts with the largest windows and frame size and acknowledges every DATA at once.
   Likewise no limit on streams, header lists or the HPACK table: the peers' own settings,
   which the decoders never see, bound those. Header validation and normalisation are off:
   an observer records, it does not police.
4. A stream's DATA in each direction is a sequence of gRPC length-prefixed messages (1 byte
   compressed flag, 4 bytes big-endian length, the message); messages may span DATA frames
   and one frame may carry several. Only the unfinished message is buffered.
5. A stream ends (one `StreamEnded`) on trailers with grpc-status, on END_STREAM both ways, on
   RST_STREAM either way, or when the connection closes.
6. Anything undecodable (an h2 protocol error, a compressed message) is one `DecodeProblem`;
   that connection's decoding stops there. Other connections are unaffected, and nothing
   raises out of `feed` or `drain`.
7. A message is complete when its last byte is delivered, not when the DATA frame carrying it
   is: a gRPC peer parses DATA as it arrives, so a server may answer a request whose frame
   goes on with the next message. h2 only hands over whole frames, so `_Reframer` splits the
   delivered part of an unfinished DATA frame into a frame of its own (HTTP/2 lets DATA be
   re-framed; END_STREAM stays on the last piece). Every other frame reaches h2 whole.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from typing import NamedTuple

import attrs
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from harness.loopback.relay import Direction

__all__ = [
    "ConnectionClosed",
    "ConnectionDecoder",
    "ConnectionOpened",
    "DecodeProblem",
    "Direction",
    "GrpcMessage",
    "HoldChanged",
    "StreamEnded",
    "WireEvent",
    "WireRecorder",
]

_LARGEST_WINDOW = 2**31 - 1
_LARGEST_FRAME = 2**24 - 1
_NO_LIMIT = 2**31 - 1
_DEFAULT_WINDOW = 65535
_PREFIX = 5  # gRPC message prefix: compressed flag + 4-byte length


@attrs.frozen
class ConnectionOpened:
    connection: int
    at: float


@attrs.frozen
class ConnectionClosed:
    connection: int
    at: float


@attrs.frozen
class HoldChanged:
    held: bool
    at: float


@attrs.frozen
class GrpcMessage:
    """One gRPC message as delivered: which stream, which RPC, which way, when it completed."""

    connection: int
    stream: int
    """HTTP/2 stream id."""
    method: str
    """The request's :path, e.g. /envoy.service.discovery.v3.AggregatedDiscoveryService/..."""
    direction: Direction
    at: float
    """When the bytes completing this message were delivered."""
    payload: bytes
    """One serialized protobuf message."""


@attrs.frozen
class StreamEnded:
    connection: int
    stream: int
    at: float
    reason: str


@attrs.frozen
class DecodeProblem:
    """The connection's bytes could not be decoded; its decoding stops here."""

    connection: int
    at: float
    detail: str


WireEvent = (
    ConnectionOpened | ConnectionClosed | HoldChanged | GrpcMessage | StreamEnded | DecodeProblem
)

_PEER = {"to_server": "client", "to_client": "server"}


def _passive_endpoint(*, client_side: bool) -> h2.connection.H2Connection:
    """An h2 connection that only receives: lenient, with flow control out of the way."""
    config = h2.config.H2Configuration(
        client_side=client_side,
        header_encoding=None,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
        normalize_inbound_headers=False,
    )
    endpoint = h2.connection.H2Connection(config=config)
    # Effective at once (no SETTINGS exchange): the peers never see these decoders.
    endpoint.local_settings = h2.settings.Settings(
        client=client_side,
        initial_values={
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _LARGEST_WINDOW,
            h2.settings.SettingCodes.MAX_FRAME_SIZE: _LARGEST_FRAME,
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: _NO_LIMIT,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: _NO_LIMIT,
        },
    )
    endpoint.max_inbound_frame_size = _LARGEST_FRAME
    # The sender sizes its HPACK table to what the real peer allowed, which we never saw.
    endpoint.decoder.max_header_list_size = _NO_LIMIT
    endpoint.decoder.max_allowed_table_size = _NO_LIMIT
    endpoint.increment_flow_control_window(_LARGEST_WINDOW - _DEFAULT_WINDOW)
    endpoint.clear_outbound_data_buffer()
    # A GOAWAY ends an h2 endpoint at once, and it refuses every later frame of the same read
    # (a PING a shutting-down server sends, frames of streams still open). An observer follows
    # the connection until its TCP close instead: a GOAWAY keeps the connection open.
    machine = endpoint.state_machine
    transitions = dict(machine._transitions)
    for state in (
        h2.connection.ConnectionState.CLIENT_OPEN,
        h2.connection.ConnectionState.SERVER_OPEN,
    ):
        for goaway in (
            h2.connection.ConnectionInputs.RECV_GOAWAY,
            h2.connection.ConnectionInputs.SEND_GOAWAY,
        ):
            transitions[(state, goaway)] = (None, state)
    machine._transitions = transitions
    return endpoint


def _header(headers: Iterable[tuple[object, object]] | None, name: bytes) -> str | None:
    for key, value in headers or ():
        if key == name:
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return None


@attrs.define
class _Stream:
    id: int
    method: str
    unfinished: dict[Direction, bytearray] = attrs.field(
        factory=lambda: {"to_server": bytearray(), "to_client": bytearray()}
    )
    client_ended: bool = False
    server_ended: bool = False


class _Stop(Exception):
    """Decoding of this connection stops; `detail` says why."""


_FRAME_HEADER = 9
_CLIENT_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _END_STREAM, _PADDED = 0x0, 0x1, 0x8


class _Reframer:
    """Rule 7: one direction's bytes as h2 should see them, the delivered part of an unfinished
    DATA frame handed over as a DATA frame of its own. Reads frame headers only (length, type,
    flags); everything else is h2's."""

    def __init__(self, *, preface: bool) -> None:
        self._pending = bytearray()
        self._preface = len(_CLIENT_PREFACE) if preface else 0

    def feed(self, data: bytes) -> bytes:
        self._pending += data
        out = bytearray()
        if self._preface:
            taken = min(self._preface, len(self._pending))
            out += self._pending[:taken]
            del self._pending[:taken]
            self._preface -= taken
            if self._preface:
                return bytes(out)
        while len(self._pending) >= _FRAME_HEADER:
            length = int.from_bytes(self._pending[:3], "big")
            kind, flags = self._pending[3], self._pending[4]
            whole = _FRAME_HEADER + length
            if len(self._pending) >= whole:
                out += self._pending[:whole]
                del self._pending[:whole]
                continue
            available = len(self._pending) - _FRAME_HEADER
            if kind != _DATA or flags & _PADDED or available == 0:
                break  # wait for the whole frame
            stream = bytes(self._pending[5:9])
            piece = flags & ~_END_STREAM
            out += available.to_bytes(3, "big") + bytes([_DATA, piece]) + stream
            out += self._pending[_FRAME_HEADER:]
            rest = length - available
            self._pending[:] = rest.to_bytes(3, "big") + bytes([_DATA, flags]) + stream
        return bytes(out)


class ConnectionDecoder:
    """Decodes one TCP connection's two byte streams into gRPC messages. Pure: no I/O, no threads.

    Feed each direction's bytes in the order the relay delivered them (across both directions).
    """

    def __init__(self, connection: int) -> None:
        self.connection = connection
        self._endpoints: dict[Direction, h2.connection.H2Connection] = {
            "to_server": _passive_endpoint(client_side=False),
            "to_client": _passive_endpoint(client_side=True),
        }
        self._reframers: dict[Direction, _Reframer] = {
            "to_server": _Reframer(preface=True),
            "to_client": _Reframer(preface=False),
        }
        self._streams: dict[int, _Stream] = {}
        self._failed = False
        self._closed = False

    @property
    def failed(self) -> bool:
        """A DecodeProblem was reported; further bytes are ignored."""
        return self._failed

    @property
    def open_streams(self) -> tuple[int, ...]:
        return tuple(self._streams)

    def feed(self, direction: Direction, data: bytes, at: float) -> list[WireEvent]:
        """Decode bytes delivered in `direction` at `at`; returns what they completed."""
        if self._failed or self._closed or not data:
            return []
        events: list[WireEvent] = []
        endpoint = self._endpoints[direction]
        try:
            framed = self._reframers[direction].feed(data)
            for event in endpoint.receive_data(framed) if framed else ():
                self._on_h2_event(direction, event, at, events)
        except h2.exceptions.ProtocolError as error:
            detail = f"HTTP/2 from the {_PEER[direction]}: {type(error).__name__}: {error}"
            events.append(self._fail(at, detail))
        except _Stop as stop:
            events.append(self._fail(at, str(stop)))
        except Exception as error:  # a decoder bug must not take the monitor down
            events.append(self._fail(at, f"decoder failure: {type(error).__name__}: {error}"))
        finally:
            for each in self._endpoints.values():
                each.clear_outbound_data_buffer()
        return events

    def close(self, at: float) -> list[WireEvent]:
        """The TCP connection closed: every stream still open ends."""
        if self._closed:
            return []
        self._closed = True
        ended: list[WireEvent] = [
            self._end(stream_id, at, "connection closed") for stream_id in list(self._streams)
        ]
        return ended

    # -- h2 events -------------------------------------------------------------------------

    def _on_h2_event(
        self, direction: Direction, event: h2.events.Event, at: float, out: list[WireEvent]
    ) -> None:
        other = self._endpoints["to_client" if direction == "to_server" else "to_server"]
        if isinstance(event, h2.events.DataReceived):
            assert event.stream_id is not None and event.data is not None
            self._endpoints[direction].acknowledge_received_data(
                event.flow_controlled_length, event.stream_id
            )
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                self._take_messages(stream, direction, event.data, at, out)
        elif isinstance(event, h2.events.RequestReceived):
            assert event.stream_id is not None
            method = _header(event.headers, b":path") or ""
            self._streams[event.stream_id] = _Stream(event.stream_id, method)
            other.send_headers(event.stream_id, event.headers or [])
        elif isinstance(event, h2.events.TrailersReceived | h2.events.ResponseReceived):
            # Trailers, or a trailers-only response (HEADERS with END_STREAM), end a gRPC call.
            ending = isinstance(event, h2.events.TrailersReceived) or event.stream_ended
            status = _header(event.headers, b"grpc-status")
            stream_id = event.stream_id
            if (
                direction == "to_client"
                and ending
                and status is not None
                and stream_id is not None
                and stream_id in self._streams
            ):
                reason = f"trailers grpc-status={status}"
                if message := _header(event.headers, b"grpc-message"):
                    reason += f" grpc-message={message!r}"
                out.append(self._end(stream_id, at, reason))
                # The call is over whatever the client does next: both decoders close the
                # stream as if reset, so h2 forgets it and ignores its stragglers.
                for endpoint in self._endpoints.values():
                    _mirror(endpoint.reset_stream, stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            assert event.stream_id is not None
            _mirror(other.end_stream, event.stream_id)
            stream = self._streams.get(event.stream_id)
            if stream is None:
                return
            if direction == "to_server":
                stream.client_ended = True
            else:
                stream.server_ended = True
            if stream.client_ended and stream.server_ended:
                out.append(self._end(event.stream_id, at, "both sides ended"))
        elif isinstance(event, h2.events.StreamReset):
            assert event.stream_id is not None
            _mirror(other.reset_stream, event.stream_id, event.error_code)
            if event.stream_id in self._streams:
                code = _error_name(event.error_code)
                if event.remote_reset:
                    reason = f"RST_STREAM from the {_PEER[direction]} ({code})"
                else:  # h2 found a stream error in what the peer sent
                    reason = f"stream error in what the {_PEER[direction]} sent ({code})"
                out.append(self._end(event.stream_id, at, reason))
        elif isinstance(event, h2.events.PushedStreamReceived):
            raise _Stop("server push on a gRPC connection")

    def _take_messages(
        self,
        stream: _Stream,
        direction: Direction,
        data: bytes,
        at: float,
        out: list[WireEvent],
    ) -> None:
        buffer = stream.unfinished[direction]
        buffer += data
        start = 0
        available = len(buffer)
        while available - start >= _PREFIX:
            flag = buffer[start]
            if flag != 0:  # known from the prefix: no need to buffer the message first
                what = "a compressed" if flag == 1 else f"an invalid (flag {flag})"
                raise _Stop(
                    f"{what} gRPC message on stream {stream.id} from the {_PEER[direction]}"
                )
            length = int.from_bytes(buffer[start + 1 : start + _PREFIX], "big")
            end = start + _PREFIX + length
            if end > available:
                break
            out.append(
                GrpcMessage(
                    connection=self.connection,
                    stream=stream.id,
                    method=stream.method,
                    direction=direction,
                    at=at,
                    payload=bytes(buffer[start + _PREFIX : end]),
                )
            )
            start = end
        if start:
            del buffer[:start]

    def _end(self, stream_id: int, at: float, reason: str) -> StreamEnded:
        stream = self._streams.pop(stream_id)
        leftovers = [
            f"{len(buffer)} bytes of an unfinished message {direction}"
            for direction, buffer in stream.unfinished.items()
            if buffer
        ]
        if leftovers:
            reason += " (" + ", ".join(leftovers) + ")"
        return StreamEnded(connection=self.connection, stream=stream_id, at=at, reason=reason)

    def _fail(self, at: float, detail: str) -> DecodeProblem:
        self._failed = True
        return DecodeProblem(connection=self.connection, at=at, detail=detail)


def _mirror(call: Callable[..., object], *arguments: object) -> None:
    """Tell the other decoder what this side did; a stream it already closed needs no telling."""
    with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.NoSuchStreamError):
        call(*arguments)


def _error_name(code: object) -> str:
    name = getattr(code, "name", None)
    return str(name) if name else f"error code {code}"


class _Delivered(NamedTuple):
    connection: int
    direction: Direction
    data: bytes
    at: float


_Recorded = ConnectionOpened | ConnectionClosed | HoldChanged | _Delivered


class WireRecorder:
    """A `RelayTap` that records what the relay delivers and decodes it on `drain()`.

    The relay thread only appends to a list; decoding runs in the thread that calls `drain()`,
    which returns every event since the previous drain in delivery order. Drain regularly: what
    is recorded is kept until then.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        """Notified whenever the relay records something (`wait_recorded`)."""
        self._recorded: list[_Recorded] = []
        self._decoding = threading.Lock()
        self._decoders: dict[int, ConnectionDecoder] = {}
        self._unknown: set[int] = set()

    # -- RelayTap (relay thread) -----------------------------------------------------------

    def connection_opened(self, connection: int, at: float) -> None:
        with self._lock:
            self._recorded.append(ConnectionOpened(connection, at))
            self._arrived.notify_all()

    def delivered(self, connection: int, direction: Direction, data: bytes, at: float) -> None:
        with self._lock:
            self._recorded.append(_Delivered(connection, direction, data, at))
            self._arrived.notify_all()

    def connection_closed(self, connection: int, at: float) -> None:
        with self._lock:
            self._recorded.append(ConnectionClosed(connection, at))
            self._arrived.notify_all()

    def hold_changed(self, held: bool, at: float) -> None:
        with self._lock:
            self._recorded.append(HoldChanged(held, at))
            self._arrived.notify_all()

    # -- the caller's thread ---------------------------------------------------------------

    def wait_recorded(self, timeout: float) -> bool:
        """Wait until something is recorded and not yet drained; False after `timeout`."""
        with self._arrived:
            return self._arrived.wait_for(lambda: bool(self._recorded), max(timeout, 0.0))

    def drain(self) -> list[WireEvent]:
        """Decode everything recorded since the last drain, in delivery order."""
        with self._decoding:
            with self._lock:
                recorded, self._recorded = self._recorded, []
            events: list[WireEvent] = []
            for item in recorded:
                if isinstance(item, _Delivered):
                    events += self._decode(item)
                elif isinstance(item, ConnectionOpened):
                    self._decoders[item.connection] = ConnectionDecoder(item.connection)
                    events.append(item)
                elif isinstance(item, ConnectionClosed):
                    decoder = self._decoders.pop(item.connection, None)
                    self._unknown.discard(item.connection)
                    if decoder is not None:
                        events += decoder.close(item.at)
                    events.append(item)
                else:
                    events.append(item)
            return events

    def _decode(self, delivery: _Delivered) -> list[WireEvent]:
        decoder = self._decoders.get(delivery.connection)
        if decoder is not None:
            return decoder.feed(delivery.direction, delivery.data, delivery.at)
        if delivery.connection in self._unknown:
            return []
        self._unknown.add(delivery.connection)
        detail = "bytes on a connection opened before the tap was set; not decoded"
        return [DecodeProblem(connection=delivery.connection, at=delivery.at, detail=detail)]
