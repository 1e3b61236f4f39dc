"""ConnectionDecoder on real HTTP/2 bytes in every chunking, WireRecorder, and the relay's tap."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from concurrent import futures

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from hypothesis import given
from hypothesis import strategies as st

from harness.lockstep.monitor import (
    ConnectionClosed,
    ConnectionDecoder,
    ConnectionOpened,
    DecodeProblem,
    GrpcMessage,
    HoldChanged,
    StreamEnded,
    WireEvent,
    WireRecorder,
)
from harness.loopback.relay import Direction, TcpRelay
from tests.harness_lockstep.monitor.conversation import (
    ADS_DELTA,
    ADS_SOTW,
    Conversation,
    Sent,
    framed,
)

LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"

Chunk = tuple[Direction, bytes]


def sotw_request(names: Sequence[str] = (), nonce: str = "") -> bytes:
    return discovery_pb2.DiscoveryRequest(
        type_url=CLUSTER,
        resource_names=list(names),
        response_nonce=nonce,
        node=base_pb2.Node(id="n"),
    ).SerializeToString()


def delta_request(subscribe: Sequence[str] = (), nonce: str = "") -> bytes:
    return discovery_pb2.DeltaDiscoveryRequest(
        type_url=LISTENER, resource_names_subscribe=list(subscribe), response_nonce=nonce
    ).SerializeToString()


def delta_response(nonce: str, size: int = 0) -> bytes:
    """A DeltaDiscoveryResponse whose one resource carries `size` bytes (any bytes will do)."""
    response = discovery_pb2.DeltaDiscoveryResponse(type_url=LISTENER, nonce=nonce)
    if size:
        body = random.Random(size).randbytes(size)
        response.resources.add(
            name="big", version="1", resource=any_pb2.Any(type_url=LISTENER, value=body)
        )
    return response.SerializeToString()


def sotw_response(nonce: str) -> bytes:
    return discovery_pb2.DiscoveryResponse(
        type_url=CLUSTER, version_info="v1", nonce=nonce
    ).SerializeToString()


# -- scenarios: real HTTP/2 between an h2 client and server ----------------------------------


def mixed_session(**options: bool) -> Conversation:
    """Concurrent streams; several messages per frame; a 20 KiB message; every way to end."""
    conversation = Conversation(**options)
    delta = conversation.open(ADS_DELTA)
    sotw = conversation.open(ADS_SOTW)
    conversation.send("to_server", delta, delta_request(["a"]), delta_request(["b"]))
    conversation.send("to_server", sotw, sotw_request())
    conversation.send("to_client", delta, delta_response("1"), delta_response("2"))
    conversation.send("to_client", sotw, sotw_response("s-1"))
    conversation.send("to_client", delta, delta_response("3", size=20 * 1024))
    conversation.send("to_server", sotw, sotw_request(["x"], nonce="s-1"))
    conversation.send("to_server", delta, delta_request(nonce="3"))
    conversation.trailers(sotw, status=13, message="gone")
    doomed = conversation.open(ADS_DELTA)
    conversation.send("to_server", doomed, delta_request())
    conversation.reset("to_server", doomed)  # Envoy gives up on the stream
    refused = conversation.open(ADS_SOTW)
    conversation.reset("to_client", refused)  # the server refuses it
    finished = conversation.open(ADS_SOTW)
    conversation.send("to_server", finished, sotw_request(), end_stream=True)
    conversation.send("to_client", finished, sotw_response("f"), end_stream=True)
    conversation.send("to_client", delta, delta_response("4"))
    return conversation


EXPECTED_ENDS = {
    3: "trailers grpc-status=13 grpc-message='gone'",
    5: "RST_STREAM from the client",
    7: "RST_STREAM from the server",
    9: "both sides ended",
    1: "connection closed",
}


def big_session(**options: bool) -> Conversation:
    conversation = Conversation(**options)
    conversation.open(ADS_SOTW)  # a few header blocks first, so the HPACK tables fill
    stream = conversation.open(ADS_DELTA)
    conversation.send("to_server", stream, delta_request(["*"]))
    conversation.send("to_client", stream, delta_response("1", size=(1 << 20) + 12345))
    conversation.send("to_server", stream, delta_request(nonce="1"))
    conversation.send("to_client", stream, delta_response("2", size=3))
    return conversation


# -- chunkings -------------------------------------------------------------------------------


def as_delivered(deliveries: list[Chunk]) -> list[Chunk]:
    return list(deliveries)


def coalesced(deliveries: list[Chunk]) -> list[Chunk]:
    """Consecutive deliveries in one direction as one."""
    merged: list[Chunk] = []
    for direction, data in deliveries:
        if merged and merged[-1][0] == direction:
            merged[-1] = (direction, merged[-1][1] + data)
        else:
            merged.append((direction, data))
    return merged


def bytewise(deliveries: list[Chunk]) -> list[Chunk]:
    return [(d, data[i : i + 1]) for d, data in deliveries for i in range(len(data))]


def split_at(deliveries: list[Chunk], cuts: set[int]) -> list[Chunk]:
    """Each delivery further split wherever an offset in `cuts` (over all bytes) falls in it."""
    chunks: list[Chunk] = []
    offset = 0
    for direction, data in deliveries:
        inside = sorted(cut - offset for cut in cuts if offset < cut < offset + len(data))
        for start, end in zip([0, *inside], [*inside, len(data)], strict=True):
            chunks.append((direction, data[start:end]))
        offset += len(data)
    return chunks


def decode_all(chunks: list[Chunk], *, close: bool = True) -> list[WireEvent]:
    decoder = ConnectionDecoder(7)
    events: list[WireEvent] = []
    for index, (direction, data) in enumerate(chunks):
        events += decoder.feed(direction, data, float(index))
    if close:
        events += decoder.close(float(len(chunks)))
    return events


def messages_of(events: list[WireEvent]) -> list[tuple[int, str, Direction, bytes]]:
    return [
        (e.stream, e.method, e.direction, e.payload) for e in events if isinstance(e, GrpcMessage)
    ]


def expected_messages(sent: list[Sent]) -> list[tuple[int, str, Direction, bytes]]:
    return [(s.stream, s.method, s.direction, s.payload) for s in sent]


def check_decoded(conversation: Conversation, chunks: list[Chunk]) -> list[WireEvent]:
    events = decode_all(chunks)
    assert not [e for e in events if isinstance(e, DecodeProblem)]
    assert messages_of(events) == expected_messages(conversation.sent)
    assert all(isinstance(e, GrpcMessage | StreamEnded) for e in events)
    assert all(e.connection == 7 for e in events if isinstance(e, GrpcMessage | StreamEnded))
    times = [e.at for e in events if isinstance(e, GrpcMessage)]
    assert times == sorted(times)
    return events


# -- ConnectionDecoder -----------------------------------------------------------------------


@pytest.mark.parametrize("chunking", [as_delivered, coalesced, bytewise])
@pytest.mark.parametrize("server_speaks_first", [False, True])
def test_every_message_of_concurrent_streams_in_any_chunking(chunking, server_speaks_first):
    conversation = mixed_session(server_speaks_first=server_speaks_first)
    events = check_decoded(conversation, chunking(conversation.deliveries))
    ends = {e.stream: e.reason for e in events if isinstance(e, StreamEnded)}
    assert set(ends) == set(EXPECTED_ENDS)
    for stream, reason in EXPECTED_ENDS.items():
        assert ends[stream].startswith(reason), ends
    # Each stream ends after its last message, once.
    ended_streams = [e.stream for e in events if isinstance(e, StreamEnded)]
    assert len(ended_streams) == len(set(ended_streams))


def test_a_message_completes_when_its_last_byte_is_delivered():
    conversation = mixed_session()
    events = decode_all(conversation.deliveries)
    decoded = [e for e in events if isinstance(e, GrpcMessage)]
    assert [m.at for m in decoded] == [float(s.delivery) for s in conversation.sent]


@pytest.mark.parametrize("big_frames", [False, True])
@pytest.mark.parametrize("chunking", [as_delivered, coalesced])
def test_a_message_over_a_mebibyte(chunking, big_frames):
    conversation = big_session(big_frames=big_frames)
    check_decoded(conversation, chunking(conversation.deliveries))
    largest = max(len(s.payload) for s in conversation.sent)
    assert largest > 1 << 20


def test_a_message_over_sixteen_kibibytes_spans_data_frames_even_one_byte_at_a_time():
    conversation = Conversation()
    stream = conversation.open(ADS_DELTA)
    conversation.send("to_client", stream, delta_response("1", size=17 * 1024))
    assert len([d for d, _ in conversation.deliveries if d == "to_client"]) >= 2
    check_decoded(conversation, bytewise(conversation.deliveries))


MIXED = mixed_session()
BIG = big_session(big_frames=True)


@given(st.sets(st.integers(1, MIXED.total_bytes() - 1), max_size=60))
def test_random_splits_of_concurrent_streams(cuts):
    check_decoded(MIXED, split_at(MIXED.deliveries, cuts))


@given(st.sets(st.integers(1, BIG.total_bytes() - 1), max_size=40))
def test_random_splits_of_a_large_message(cuts):
    check_decoded(BIG, split_at(BIG.deliveries, cuts))


@pytest.mark.parametrize("seed", range(8))
def test_seeded_random_splits_down_to_single_bytes(seed):
    chance = random.Random(seed)
    total = MIXED.total_bytes()
    cuts = {chance.randrange(1, total) for _ in range(chance.choice([5, 50, 500, total // 2]))}
    check_decoded(MIXED, split_at(MIXED.deliveries, cuts))


def test_a_connection_closed_mid_message_ends_its_streams_without_the_partial_message():
    conversation = Conversation()
    stream = conversation.open(ADS_DELTA)
    conversation.send("to_server", stream, delta_request(["a"]))
    before = len(conversation.deliveries)
    conversation.send("to_client", stream, delta_response("1", size=40_000))
    # The relay was cut after delivering part of the response.
    direction, data = conversation.deliveries[before]
    assert direction == "to_client"
    chunks = [*conversation.deliveries[:before], (direction, data[: len(data) // 2])]
    events = decode_all(chunks)
    assert messages_of(events) == expected_messages(conversation.sent[:1])
    (ended,) = [e for e in events if isinstance(e, StreamEnded)]
    assert ended.stream == stream
    assert ended.reason.startswith("connection closed")
    assert "unfinished message to_client" in ended.reason
    assert events[-1] == ended


def test_streams_go_on_after_a_goaway():
    conversation = Conversation()
    stream = conversation.open(ADS_SOTW)
    conversation.send("to_server", stream, sotw_request())
    conversation.goaway(last_stream_id=stream)  # a graceful shutdown begins
    conversation.send("to_client", stream, sotw_response("1"))
    conversation.send("to_server", stream, sotw_request(nonce="1"))
    conversation.trailers(stream)
    events = check_decoded(conversation, conversation.deliveries)
    assert [e.reason for e in events if isinstance(e, StreamEnded)] == ["trailers grpc-status=0"]


@pytest.mark.parametrize("afterwards", ["server resets", "client ends", "client sends on"])
def test_frames_after_the_trailers_are_ignored(afterwards):
    conversation = Conversation()
    stream = conversation.open(ADS_DELTA)
    conversation.send("to_server", stream, delta_request())
    conversation.trailers(stream, status=0)
    if afterwards == "server resets":  # what a gRPC server does when the client is still open
        conversation.reset("to_client", stream, error_code=0)
    elif afterwards == "client ends":
        conversation.end("to_server", stream)
    else:  # the client's next request crossed the trailers
        conversation.client.send_data(stream, framed(delta_request(["late"])))
        conversation.flush()
    following = conversation.open(ADS_DELTA)
    conversation.send("to_server", following, delta_request(["next"]))
    events = decode_all(conversation.deliveries)
    assert not [e for e in events if isinstance(e, DecodeProblem)]
    assert messages_of(events) == expected_messages(conversation.sent)
    ends = [(e.stream, e.reason) for e in events if isinstance(e, StreamEnded)]
    assert ends == [(stream, "trailers grpc-status=0"), (following, "connection closed")]


def test_a_trailers_only_response_ends_the_stream():
    conversation = Conversation()
    stream = conversation.open(ADS_DELTA, response_headers=False)
    conversation.send("to_server", stream, delta_request())
    conversation.trailers_only(stream, status=12)
    events = check_decoded(conversation, conversation.deliveries)
    assert [e.reason for e in events if isinstance(e, StreamEnded)] == ["trailers grpc-status=12"]


def test_a_compressed_message_is_a_problem_and_decoding_stops():
    conversation = Conversation()
    stream = conversation.open(ADS_DELTA)
    conversation.send("to_server", stream, delta_request(["a"]))
    conversation.client.send_data(stream, framed(delta_request(["b"]), compressed=True))
    conversation.flush()
    conversation.send("to_server", stream, delta_request(["c"]))
    events = decode_all(conversation.deliveries, close=False)
    assert messages_of(events) == expected_messages(conversation.sent[:1])
    (problem,) = [e for e in events if isinstance(e, DecodeProblem)]
    assert "compressed" in problem.detail
    assert events[-1] == problem


def test_bytes_that_are_not_http2_are_a_problem_not_an_exception():
    decoder = ConnectionDecoder(3)
    (problem,) = decoder.feed("to_server", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1.0)
    assert isinstance(problem, DecodeProblem)
    assert problem.connection == 3 and "HTTP/2 from the client" in problem.detail
    assert decoder.failed
    assert decoder.feed("to_server", b"more", 2.0) == []


def test_buffers_hold_only_the_unfinished_message():
    conversation = Conversation()
    stream = conversation.open(ADS_DELTA)
    for index in range(200):
        conversation.send("to_client", stream, delta_response(str(index), size=1000))
    decoder = ConnectionDecoder(1)
    for direction, data in conversation.deliveries:
        decoder.feed(direction, data, 0.0)
    state = decoder._streams[stream]
    assert all(len(buffer) == 0 for buffer in state.unfinished.values())
    conversation.trailers(stream)
    for direction, data in conversation.deliveries[-1:]:
        decoder.feed(direction, data, 0.0)
    assert decoder.open_streams == ()
    # h2 forgets closed streams on both decoders once a new stream opens.
    conversation.open(ADS_DELTA)
    for direction, data in conversation.deliveries[-2:]:
        decoder.feed(direction, data, 0.0)
    assert all(len(e.streams) <= 1 for e in decoder._endpoints.values())


# -- WireRecorder ----------------------------------------------------------------------------


def test_recorder_decodes_in_delivery_order_and_keeps_connections_apart():
    recorder = WireRecorder()
    good = mixed_session()
    recorder.connection_opened(1, 0.0)
    recorder.connection_opened(2, 0.0)
    recorder.delivered(2, "to_server", b"garbage, not HTTP/2 at all", 0.5)
    recorder.hold_changed(True, 0.6)
    half = len(good.deliveries) // 2
    for direction, data in good.deliveries[:half]:
        recorder.delivered(1, direction, data, 1.0)
    first = recorder.drain()
    recorder.hold_changed(False, 1.5)
    for direction, data in good.deliveries[half:]:
        recorder.delivered(1, direction, data, 2.0)
        recorder.delivered(2, direction, data, 2.0)  # ignored: that connection is broken
    recorder.connection_closed(1, 3.0)
    recorder.connection_closed(2, 3.0)
    second = recorder.drain()
    assert recorder.drain() == []
    events = first + second
    assert events[:2] == [ConnectionOpened(1, 0.0), ConnectionOpened(2, 0.0)]
    assert isinstance(events[2], DecodeProblem) and events[2].connection == 2
    assert events[3] == HoldChanged(True, 0.6)
    assert HoldChanged(False, 1.5) in second
    assert messages_of(events) == expected_messages(good.sent)
    assert [e for e in events if isinstance(e, DecodeProblem)] == [events[2]]
    assert events[-2:] == [ConnectionClosed(1, 3.0), ConnectionClosed(2, 3.0)]
    closing = events.index(ConnectionClosed(1, 3.0))
    last_end = events[closing - 1]
    assert isinstance(last_end, StreamEnded) and last_end.stream == 1


def test_recorder_reports_bytes_of_a_connection_it_never_saw_open_once():
    recorder = WireRecorder()
    recorder.delivered(4, "to_client", b"abc", 1.0)
    recorder.delivered(4, "to_client", b"def", 2.0)
    recorder.connection_closed(4, 3.0)
    events = recorder.drain()
    assert len(events) == 2
    assert isinstance(events[0], DecodeProblem) and "before the tap" in events[0].detail
    assert events[1] == ConnectionClosed(4, 3.0)


# -- real gRPC (grpcio client and server) through the relay, decoded ---------------------------

ECHO = "/routeproof.test.Echo/Chat"


def chat(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
    for request in requests:
        yield b"echo:" + request


@pytest.fixture
def grpc_echo() -> Iterator[tuple[str, int]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handler = grpc.method_handlers_generic_handler(
        "routeproof.test.Echo", {"Chat": grpc.stream_stream_rpc_method_handler(chat)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield ("127.0.0.1", port)
    finally:
        server.stop(grace=None).wait()


def test_grpc_through_the_relay_decodes_to_the_messages_sent(grpc_echo):
    recorder = WireRecorder()
    requests = [b"one", b"x" * 100_000, b"three"]
    with TcpRelay(grpc_echo, tap=recorder) as relay:
        channel = grpc.insecure_channel(f"{relay.address}:{relay.port}")
        try:
            replies = list(channel.stream_stream(ECHO)(iter(requests), timeout=10))
        finally:
            channel.close()
        assert relay.wait_until(lambda r: r.connection_count == 0, 5)
    assert replies == [b"echo:" + r for r in requests]
    events = recorder.drain()
    assert not [e for e in events if isinstance(e, DecodeProblem)]
    decoded = [e for e in events if isinstance(e, GrpcMessage)]
    assert {e.method for e in decoded} == {ECHO}
    assert [e.payload for e in decoded if e.direction == "to_server"] == requests
    assert [e.payload for e in decoded if e.direction == "to_client"] == replies
    (ended,) = [e for e in events if isinstance(e, StreamEnded)]
    assert ended.reason == "trailers grpc-status=0"
    assert isinstance(events[0], ConnectionOpened) and isinstance(events[-1], ConnectionClosed)


def test_a_message_ending_inside_a_data_frame_is_whole_before_the_frame_is():
    """A gRPC peer parses DATA as it arrives: a server may answer a request whose DATA frame
    goes on with the next message. So the decoder hands h2 the delivered part of an unfinished
    DATA frame, and a message completes with its last byte, not with its frame (found when the
    monitor saw Envoy's SDS request after the server's answer to it)."""
    conversation = Conversation(big_frames=True)
    stream = conversation.open(ADS_SOTW)
    first, second = sotw_request(["a"]), sotw_request(["b"] * 4000)
    before = len(conversation.deliveries)
    conversation.send("to_server", stream, first, second)  # one DATA frame carries both
    (delivery,) = [
        data for direction, data in conversation.deliveries[before:] if direction == "to_server"
    ]
    decoder = ConnectionDecoder(1)
    for direction, data in conversation.deliveries[:before]:
        decoder.feed(direction, data, 0.0)
    end_of_first = delivery.index(framed(first)) + len(framed(first))
    early = [
        e
        for e in decoder.feed("to_server", delivery[:end_of_first], 1.0)
        if isinstance(e, GrpcMessage)
    ]
    assert [m.payload for m in early] == [first]
    late = [
        e
        for e in decoder.feed("to_server", delivery[end_of_first:], 2.0)
        if isinstance(e, GrpcMessage)
    ]
    assert [m.payload for m in late] == [second]
