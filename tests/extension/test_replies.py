"""Reading replies: "empty = no change" and the structural checks, without a network."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3.route_components_pb2 import Route, VirtualHost
from envoy.config.route.v3.route_pb2 import RouteConfiguration

from sut.errors import ExtensionError
from sut.extension import replies
from sut.extension.generated import extension_pb2
from sut.extension.hooks import RouteContext, TranslateModifyResult

SENT = TranslateModifyResult(
    clusters=(Cluster(name="c"),),
    secrets=(),
    listeners=(Listener(name="l"),),
    routes=(RouteConfiguration(name="rc"),),
)


def test_empty_replies_mean_no_change():
    route = Route(name="r")
    assert replies.read_route_reply(b"", route) is route
    vhost = VirtualHost(name="v")
    assert replies.read_virtual_host_reply(b"", vhost) is vhost
    listener = Listener(name="l")
    assert replies.read_listener_reply(b"", listener) is listener
    assert replies.read_translate_reply(b"", SENT) is SENT


def test_a_translate_reply_replaces_the_lists_wholesale():
    reply = extension_pb2.PostTranslateModifyResponse(clusters=[Cluster(name="only")])
    result = replies.read_translate_reply(reply.SerializeToString(), SENT)
    assert result == TranslateModifyResult(
        clusters=(Cluster(name="only"),), secrets=(), listeners=(), routes=()
    )


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (
            extension_pb2.PostTranslateModifyResponse(
                listeners=[Listener(name="a"), Listener(name="a")]
            ),
            "Listener 'a' appears more than once",
        ),
        (
            extension_pb2.PostTranslateModifyResponse(routes=[RouteConfiguration()]),
            "RouteConfiguration #0 has no name",
        ),
        (
            extension_pb2.PostTranslateModifyResponse(clusters=[Cluster(name="x"), Cluster()]),
            "Cluster #1 has no name",
        ),
    ],
)
def test_unnamed_or_duplicate_resources_are_invalid_output(reply, message):
    with pytest.raises(ExtensionError) as raised:
        replies.read_translate_reply(reply.SerializeToString(), SENT)
    assert raised.value.kind == "invalid-output"
    assert raised.value.hook == "PostTranslateModify"
    assert message in raised.value.reason


def test_bytes_that_do_not_parse_are_invalid_output():
    with pytest.raises(ExtensionError) as raised:
        replies.read_route_reply(b"\xff\xff\xff\xff", Route(name="r"))
    assert raised.value.kind == "invalid-output"


def test_an_unnamed_listener_is_invalid_output():
    reply = extension_pb2.PostHTTPListenerModifyResponse(listener=Listener())
    with pytest.raises(ExtensionError, match="no name"):
        replies.read_listener_reply(reply.SerializeToString(), Listener(name="l"))


def test_requests_carry_the_context():
    request = replies.route_request(
        Route(name="r"), RouteContext(hostnames=["www.example.com"], extension_resources=[b"{}"])
    )
    assert list(request.post_route_context.hostnames) == ["www.example.com"]
    assert request.post_route_context.extension_resources[0].unstructured_bytes == b"{}"


def test_contexts_validate_on_construction():
    with pytest.raises(TypeError):
        RouteContext(hostnames="www.example.com")
    with pytest.raises(TypeError):
        RouteContext(extension_resources=["not bytes"])
    with pytest.raises(TypeError):
        TranslateModifyResult(clusters=(Listener(),), secrets=(), listeners=(), routes=())
