"""Real HTTP/2 bytes for gRPC streams, made in memory: an h2 client and server wired together.

Every byte either side sends is delivered to the other at once and recorded as a delivery
(direction, bytes), the way the relay would have delivered it; the gRPC messages sent are
recorded too, so a test can compare what a decoder makes of the deliveries with what was sent.
"""

from __future__ import annotations

import attrs
import h2.config
import h2.connection
import h2.events
import h2.settings
from hyperframe.frame import GoAwayFrame

from harness.loopback.relay import Direction

ADS_SOTW = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
ADS_DELTA = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"


def framed(payload: bytes, *, compressed: bool = False) -> bytes:
    """One gRPC length-prefixed message."""
    return bytes([int(compressed)]) + len(payload).to_bytes(4, "big") + payload


@attrs.frozen
class Sent:
    stream: int
    method: str
    direction: Direction
    payload: bytes
    delivery: int
    """Index of the delivery that carried the message's last byte."""


class Conversation:
    """An h2 client (Envoy's role) and server (the xDS server's role) talking in memory."""

    def __init__(self, *, big_frames: bool = False, server_speaks_first: bool = False) -> None:
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.server = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        self.deliveries: list[tuple[Direction, bytes]] = []
        self.sent: list[Sent] = []
        self.methods: dict[int, str] = {}
        if big_frames:  # what real peers do: large windows and frames
            for endpoint in (self.client, self.server):
                endpoint.local_settings = h2.settings.Settings(
                    client=endpoint.config.client_side,
                    initial_values={
                        h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 28,
                        h2.settings.SettingCodes.MAX_FRAME_SIZE: 1 << 20,
                        h2.settings.SettingCodes.HEADER_TABLE_SIZE: 1 << 16,
                    },
                )
                endpoint.max_inbound_frame_size = 1 << 20
                endpoint.decoder.max_allowed_table_size = 1 << 16
        if server_speaks_first:  # its SETTINGS reach the client before the client's preface
            self.client.initiate_connection()
            self.server.initiate_connection()
            self._flush_one("to_client")
        else:
            self.client.initiate_connection()
            self._flush_one("to_server")
            self.server.initiate_connection()
        if big_frames:
            self.client.increment_flow_control_window((1 << 28) - 65535)
            self.server.increment_flow_control_window((1 << 28) - 65535)
        self.flush()

    # -- moving bytes ----------------------------------------------------------------------

    def _flush_one(self, direction: Direction) -> bool:
        sender, receiver = (
            (self.client, self.server) if direction == "to_server" else (self.server, self.client)
        )
        data = sender.data_to_send()
        if not data:
            return False
        self.deliveries.append((direction, data))
        for event in receiver.receive_data(data):
            if isinstance(event, h2.events.DataReceived):
                assert event.stream_id is not None
                receiver.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        return True

    def flush(self) -> None:
        while self._flush_one("to_server") | self._flush_one("to_client"):
            pass

    def inject(self, direction: Direction, data: bytes) -> None:
        """Bytes the decoder sees that the in-memory peers never process (e.g. a GOAWAY)."""
        self.flush()
        self.deliveries.append((direction, data))

    # -- gRPC ------------------------------------------------------------------------------

    def open(self, method: str, *, response_headers: bool = True) -> int:
        stream = self.client.get_next_available_stream_id()
        self.client.send_headers(
            stream,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", method),
                (":authority", "xds_cluster"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ],
        )
        self.methods[stream] = method
        self.flush()
        if response_headers:
            self.server.send_headers(
                stream, [(":status", "200"), ("content-type", "application/grpc")]
            )
            self.flush()
        return stream

    def send(
        self, direction: Direction, stream: int, *payloads: bytes, end_stream: bool = False
    ) -> None:
        """Send messages (several in one call share DATA frames) and deliver them."""
        sender = self.client if direction == "to_server" else self.server
        data = b"".join(framed(payload) for payload in payloads)
        while True:
            room = min(sender.local_flow_control_window(stream), sender.max_outbound_frame_size)
            if room == 0:
                self.flush()  # the receiver acknowledges; its WINDOW_UPDATE comes back
                continue
            chunk, data = data[:room], data[room:]
            sender.send_data(stream, chunk, end_stream=end_stream and not data)
            if not data:
                break
        first_new = len(self.deliveries)
        self.flush()
        delivery = next(
            index
            for index in range(first_new, len(self.deliveries))
            if self.deliveries[index][0] == direction
        )
        for payload in payloads:
            self.sent.append(Sent(stream, self.methods[stream], direction, payload, delivery))

    def trailers(self, stream: int, status: int = 0, message: str = "") -> None:
        trailers = [("grpc-status", str(status))]
        if message:
            trailers.append(("grpc-message", message))
        self.server.send_headers(stream, trailers, end_stream=True)
        self.flush()

    def trailers_only(self, stream: int, status: int) -> None:
        self.server.send_headers(
            stream,
            [
                (":status", "200"),
                ("content-type", "application/grpc"),
                ("grpc-status", str(status)),
            ],
            end_stream=True,
        )
        self.flush()

    def end(self, direction: Direction, stream: int) -> None:
        (self.client if direction == "to_server" else self.server).end_stream(stream)
        self.flush()

    def reset(self, direction: Direction, stream: int, error_code: int = 8) -> None:
        (self.client if direction == "to_server" else self.server).reset_stream(stream, error_code)
        self.flush()

    def goaway(self, last_stream_id: int) -> None:
        frame = GoAwayFrame(0)
        frame.last_stream_id = last_stream_id
        self.inject("to_client", frame.serialize())

    # -- what a decoder should make of it --------------------------------------------------

    def total_bytes(self) -> int:
        return sum(len(data) for _, data in self.deliveries)
