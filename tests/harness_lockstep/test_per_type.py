"""The per-type transport in the lockstep harness: a relay per type tapping one monitor, cuts
of one type's streams, their letters, and a cut of the RDS streams against real Envoy."""

from __future__ import annotations

import socket

import attrs
import pytest

from harness.commands.explore import initial_model
from harness.lockstep.alphabet import COARSE, FULL, PER_TYPE_CUTS, alphabet
from harness.lockstep.monitor.wire import (
    ConnectionClosed,
    ConnectionOpened,
    HoldChanged,
    WireRecorder,
)
from harness.lockstep.operations import CutXds, HoldXds, UpdateRoute
from harness.lockstep.proxy import Proxy
from harness.lockstep.relay_mux import RelayMux
from harness.lockstep.replay_files import decode_operations, encode_operations
from harness.lockstep.session import Session
from harness.lockstep.stack import StackSettings
from harness.loopback import processes
from harness.loopback.bootstrap import PER_TYPE_CLUSTERS, AdsServer
from model import Backend

PER_TYPE = StackSettings(transport="per-type")


# ---------------------------------------------------------------- the relays


def test_the_mux_keeps_each_relays_connections_apart():
    recorder = WireRecorder()
    mux = RelayMux(recorder, 5)
    for index in range(5):
        mux.tap(index).connection_opened(1, 1.0)
    mux.tap(2).connection_closed(1, 2.0)
    events = recorder.drain()
    opened = [e.connection for e in events if isinstance(e, ConnectionOpened)]
    closed = [e.connection for e in events if isinstance(e, ConnectionClosed)]
    assert len(set(opened)) == 5 and closed == [mux.connection(2, 1)]
    assert mux.connection(0, 2) not in opened  # relay 0's next connection is new too


def test_the_mux_reports_one_hold_of_the_whole_link():
    recorder = WireRecorder()
    mux = RelayMux(recorder, 3)
    for index in range(3):
        mux.tap(index).hold_changed(True, 1.0 + index)
    mux.tap(0).hold_changed(False, 5.0)
    mux.tap(1).hold_changed(False, 6.0)
    assert [e for e in recorder.drain() if isinstance(e, HoldChanged)] == [HoldChanged(True, 1.0)]
    mux.tap(2).hold_changed(False, 7.0)
    assert recorder.drain() == [HoldChanged(False, 7.0)]


def test_one_relay_taps_the_recorder_itself():
    recorder = WireRecorder()
    assert RelayMux(recorder, 1).tap(0) is recorder
    with pytest.raises(ValueError):
        RelayMux(recorder, 2).tap(2)


def test_a_per_type_proxy_has_a_relay_per_type_and_its_bootstrap_names_each():
    proxy = Proxy(0, node_id="n", mode="delta", initial_fetch_timeout=1.0, transport="per-type")
    try:
        proxy.start_relay(("127.0.0.1", 9))
        assert set(proxy.relays) == set(PER_TYPE_CLUSTERS)
        ports = {short: relay.port for short, relay in proxy.relays.items()}
        assert len(set(ports.values())) == 5
        ads = AdsServer("127.0.0.1", proxy.relay.port, transport="per-type", type_ports=ports)
        clusters = {c["name"]: c for c in ads.clusters()}
        for short, name in PER_TYPE_CLUSTERS.items():
            endpoint = clusters[name]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
            assert endpoint["endpoint"]["address"]["socket_address"]["port_value"] == ports[short]
    finally:
        proxy.stop()
    for port in ports.values():  # every relay stopped with the proxy
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            pass
    with pytest.raises(ValueError, match="unknown types"):
        AdsServer("127.0.0.1", 1, transport="per-type", type_ports={"XDS": 2})


def test_an_ads_proxy_has_one_relay():
    proxy = Proxy(0, node_id="n", mode="sotw", initial_fetch_timeout=1.0)
    assert list(proxy.relays) == ["ADS"] and proxy.relays["ADS"] is proxy.relay


# -------------------------------------------------------------- the operation


def test_a_cut_of_one_type_reads_replays_and_needs_a_flowing_link():
    cut = CutXds(None, "RDS")
    assert cut.describe().startswith("cut the RDS streams (")
    assert CutXds(1, "EDS").describe().startswith("cut the EDS streams of proxy 1 (")
    assert '"stream"' not in encode_operations([CutXds()])
    operations = [CutXds(None, "RDS"), CutXds(1, "SDS"), CutXds()]
    assert decode_operations(encode_operations(operations)) == operations
    with pytest.raises(ValueError):
        CutXds(None, "XDS")
    model = initial_model(PER_TYPE)
    assert cut.on_model(model) == model  # rule 5: a cut of a flowing link changes nothing
    with pytest.raises(ValueError, match="flowing"):
        cut.on_model(HoldXds().on_model(model))


def test_per_type_cut_letters_exist_only_with_the_per_type_transport():
    assert alphabet("coarse", 1, "ads") is COARSE and alphabet("full", 1, "ads") is FULL
    coarse = {letter.label: letter for letter in alphabet("coarse", 1, "per-type")}
    assert len(coarse) == len(COARSE) + len(PER_TYPE_CUTS["coarse"])
    assert len(alphabet("full", 2, "per-type")) == len(alphabet("full", 2)) + 2 * 5
    model = initial_model(PER_TYPE)
    assert coarse["cut RDS streams"].operation(model) == CutXds(None, "RDS")
    assert coarse["cut RDS streams"].operation(HoldXds().on_model(model)) is None


# ------------------------------------------------------------- real Envoy


@pytest.mark.envoy
@pytest.mark.parametrize("mode", ["delta", "sotw"])
def test_cutting_the_rds_streams_while_a_route_changes_converges_on_the_new_route(mode):
    before = set(processes.live_children())
    session = Session(StackSettings(mode=mode, transport="per-type"))
    try:
        session.start()
        assert session.check() == []
        proxy = session.stack.proxies[0]
        rds = proxy.stream_ids("RDS")
        others = proxy.stream_ids() - rds - proxy.stream_ids("EDS")
        assert rds and others
        # Move a route to a Service whose Cluster the proxy already holds (a new Cluster would
        # meet the SUT's validate_clusters ahead of its warming on the CDS stream).
        route, other = session.world.routes[0], session.world.routes[1]
        target = other.rules[0].backends[0].service
        assert target != route.rules[0].backends[0].service
        rule = route.rules[0]
        changed = attrs.evolve(
            route, rules=(attrs.evolve(rule, backends=(Backend(target),)), *route.rules[1:])
        )
        session.apply(CutXds(None, "RDS"))
        session.apply(UpdateRoute(changed))
        assert session.check() == []
        after = proxy.stream_ids("RDS")
        assert after and not after & rds, "the RDS streams were not replaced"
        assert others <= proxy.stream_ids(), "the cut reached other types' streams"
    finally:
        session.stop()
    assert set(processes.live_children()) == before


def test_across_streams_a_request_served_from_another_cluster_may_meet_it_missing():
    """Per type, a request may meet a 503 or no answer while the step changes what answers it, or
    only which Cluster serves it (a route rule moved: same Service, a Cluster of another name);
    a request served alike from the same Cluster is judged strictly."""
    from harness.lockstep.invariants import across_streams
    from model import (
        GatewayListener,
        Match,
        ProxyConfig,
        Request,
        Route,
        Rule,
        Served,
        Service,
        Status,
        Unreachable,
        World,
        expected_through,
    )

    listener = GatewayListener("http", "HTTP", 8080)
    services = (Service("svc-a", ("svc-a-0",)), Service("svc-b", ("svc-b-0",)))
    root = Rule((Match("Exact", "/"),), (Backend("svc-a"),))
    api = Rule((Match("PathPrefix", "/api"),), (Backend("svc-b"),))
    before = World(listeners=(listener,), routes=(Route("r", 1, (root, api)),), services=services)
    moved = World(listeners=(listener,), routes=(Route("r", 1, (api, root)),), services=services)
    changed = World(
        listeners=(listener,),
        routes=(Route("r", 1, (root, Rule(api.matches, (Backend("svc-a"),)))),),
        services=services,
    )
    pods = frozenset({"svc-a-0", "svc-b-0"})
    missing = {Status(503), Unreachable()}
    root_request = Request(8080, "http", "x.example.com", "/")
    api_request = Request(8080, "http", "x.example.com", "/api")

    def judge(*worlds: World):
        configs = tuple(ProxyConfig(world) for world in worlds)
        return across_streams(lambda request: expected_through(configs, request, pods), configs)

    a, b = Served("svc-a", "svc-a-0", None), Served("svc-b", "svc-b-0", None)
    # The rule serving "/" moved from index 0 to 1: same answer, a Cluster of another name.
    assert judge(before, moved)(root_request) == {a} | missing
    assert judge(before, moved)(api_request) == {b} | missing
    # Nothing about "/" changed: judged as over ADS.
    assert judge(before, changed)(root_request) == {a}
    assert judge(before, changed)(api_request) == {a, b} | missing
    assert judge(before, before)(api_request) == {b}


@pytest.mark.envoy
@pytest.mark.parametrize("mode", ["delta", "sotw"])
def test_a_route_moved_to_a_new_cluster_converges_per_type(mode):
    """Per type, the RDS stream may deliver a route before the CDS stream delivers its new
    Cluster; the SUT once had Envoy NACK such a route (validate_clusters) and never sent it again.
    Three moves in one session, each a chance for the RDS stream to win the race."""
    session = Session(StackSettings(mode=mode, transport="per-type"))
    try:
        session.start()
        for backend in ("svc-c", "svc-a", "svc-c"):
            route = session.world.routes[0]
            rule = attrs.evolve(route.rules[0], backends=(Backend(backend),))
            session.apply(UpdateRoute(attrs.evolve(route, rules=(rule, *route.rules[1:]))))
            assert session.check() == []
    finally:
        session.stop()
