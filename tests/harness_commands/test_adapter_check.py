"""`check --adapter`: the harness puts an xDS server it did not build under test, through the
adapter protocol, and judges it from the wire, Envoy and the probes alone.

The in-process server's introspection (`NO_BACK_DOOR`) is made to raise, so a judgement that
still read it would fail here, for the in-process server and through the adapter alike.
"""

from __future__ import annotations

import json

import pytest

from harness.commands.cli import main
from harness.commands.external import external_server, lacking
from harness.commands.kill_table import KillTable
from harness.lockstep.operations import (
    CutXds,
    RejectedUpdate,
    RestartControlPlane,
    RestartEnvoy,
)
from harness.lockstep.server_under_test import ExternalServer, stop_reference_adapter
from harness.lockstep.session import Session
from harness.lockstep.stack import StackSettings
from harness.loopback import processes
from harness.loopback.adapter import Capabilities
from harness.loopback.adapter.generated import adapter_pb2
from harness.loopback.adapter.reference import ReferenceAdapter, split_mutants
from sut.mutants import Mutants
from sut.xds import XdsServer

NO_BACK_DOOR = ("stream_statuses", "wait_for", "wait_converged", "exchange_log")


@pytest.fixture
def no_back_door(monkeypatch):
    """Every introspection call of the in-process server raises."""

    def refusing(name: str):
        def refuse(*_args: object, **_kwargs: object) -> None:
            raise AssertionError(f"the harness read the xDS server's own {name}")

        return refuse

    for name in NO_BACK_DOOR:
        monkeypatch.setattr(XdsServer, name, refusing(name))


@pytest.fixture
def children():
    """No process outlives the test (the reference adapter included)."""
    before = set(processes.live_children())
    yield
    stop_reference_adapter()
    assert set(processes.live_children()) == before


def _check(tmp_path, *extra: str) -> tuple[int, dict]:
    report = tmp_path / "report.json"
    arguments = ["check", "--max-examples", "3", "--steps", "6", "--seed", "5"]
    arguments += ["--workers", "1", "--database", "none", "--json", str(report), *extra]
    code = main(arguments)
    return code, json.loads(report.read_text())


# ---------------------------------------------------------------- no Envoy


def test_the_options_name_an_adapter_and_its_server_by_address():
    assert external_server(None, None) is None
    assert external_server("reference", None) == ExternalServer("reference")
    assert external_server("127.0.0.1:1", "127.0.0.1:2") == ExternalServer(
        "127.0.0.1:1", "127.0.0.1:2"
    )
    with pytest.raises(ValueError, match="needs --adapter"):
        external_server(None, "127.0.0.1:2")
    with pytest.raises(ValueError, match="HOST:PORT"):
        external_server("localhost", None)


def test_what_the_server_lacks_names_the_transport_and_the_clients():
    capabilities = Capabilities(frozenset({"sotw-ads"}), frozenset({"envoy"}), ("a:1",), "x")
    sotw = StackSettings(mode="sotw")
    assert lacking(sotw, capabilities) is None
    assert "delta-ads transport" in (lacking(StackSettings(mode="delta"), capabilities) or "")
    proxyless = lacking(StackSettings(mode="sotw", grpc_clients=1), capabilities)
    assert proxyless is not None and "proxyless gRPC clients" in proxyless


def test_server_side_mutants_go_to_the_adapter_and_the_rest_stay_in_the_runner():
    names = ["seed", "version-from-store", "versions-restart-with-process", "nack-loop"]
    adapter, runner = split_mutants(Mutants.of(names))
    assert {m.value for m in adapter.names} == {
        "resubscribe-ignored",  # implied by seed, whose failure policy stays in the runner
        "versions-restart-with-process",  # behind an adapter the server owns its versions
        "nack-loop",
    }
    assert {m.value for m in runner.names} == {"seed", "version-from-store"}


def test_the_kill_table_says_which_mutants_it_did_not_run_through_the_adapter():
    table = KillTable((), (), (("version-from-store", "the server names its own versions"),))
    assert "Not run through the adapter: `version-from-store`" in table.as_markdown()
    assert json.loads(table.as_json())["not_through_adapter"][0]["name"] == "version-from-store"


def test_a_foreign_adapter_runs_on_one_worker():
    """One server, one example at a time: each example starts with its Restart."""
    assert main(["check", "--adapter", "127.0.0.1:1", "--workers", "2"]) == 2


def test_only_the_reference_adapter_carries_server_side_mutants(capsys):
    arguments = ["check", "--adapter", "127.0.0.1:1", "--workers", "1", "--mutant", "nack-loop"]
    assert main(arguments) == 2
    assert "only --adapter reference can switch them on" in capsys.readouterr().err


# ---------------------------------------------------------------- real Envoy


@pytest.mark.envoy
def test_check_through_the_reference_adapter_passes_in_both_modes(
    tmp_path, monkeypatch, no_back_door, children
):
    monkeypatch.chdir(tmp_path)
    code, report = _check(tmp_path, "--adapter", "reference", "--xds", "both")
    assert code == 0 and report["passed"] is True and report["skipped"] == []
    assert [v["variant"] for v in report["variants"]] == ["delta", "sotw"]
    assert all(v["adapter"] == "reference" and v["examples"] >= 3 for v in report["variants"])


@pytest.mark.envoy
def test_check_of_the_in_process_server_reads_none_of_its_introspection(
    tmp_path, monkeypatch, no_back_door, children
):
    monkeypatch.chdir(tmp_path)
    code, report = _check(tmp_path, "--xds", "delta")
    assert code == 0 and report["passed"] is True


@pytest.mark.envoy
@pytest.mark.parametrize("mode", ["delta", "sotw"])
@pytest.mark.parametrize("external", [None, ExternalServer("reference")], ids=["own", "adapter"])
def test_cuts_restarts_and_rejections_converge_judged_from_the_wire(
    mode, external, no_back_door, children
):
    """The operations whose judging read the server before: a cut, a control-plane restart (an
    adapter's Restart, then a fresh runner pushes again), a rejected update, a new Envoy."""
    session = Session(StackSettings(mode=mode, external=external))
    try:
        session.start()
        assert session.check() == []
        for operation in (CutXds(), RestartControlPlane(), RejectedUpdate(), RestartEnvoy()):
            session.apply(operation)
            assert session.check() == [], operation.describe()
    finally:
        session.stop()


@pytest.mark.envoy
def test_a_server_side_mutant_is_caught_through_the_adapter(tmp_path, monkeypatch, children):
    monkeypatch.chdir(tmp_path)
    code, report = _check(
        tmp_path, "--adapter", "reference", "--xds", "delta", "--mutant", "nonce-from-version"
    )
    assert code == 1 and report["passed"] is False
    counterexample = report["variants"][0]["counterexample"]
    assert {v["invariant"] for v in counterexample["violations"]} == {"protocol:nonce"}
    replay = tmp_path / counterexample["replay"]
    assert json.loads(replay.read_text())["settings"]["adapter"] == "reference"
    assert main(["replay", str(replay)]) == 1  # reproduced through the adapter


class SotwOnly(ReferenceAdapter):
    """The reference server, claiming only SotW over ADS and Envoy clients."""

    def Capabilities(self, request, context):
        return adapter_pb2.CapabilitiesResponse(
            transports=[adapter_pb2.SOTW_AGGREGATED],
            clients=[adapter_pb2.ENVOY],
            ads_addresses=[self.xds.address],
            server="sotw only",
        )


@pytest.mark.envoy
def test_what_the_server_lacks_is_skipped_and_reported(tmp_path, monkeypatch, children):
    monkeypatch.chdir(tmp_path)
    adapter = SotwOnly().start()
    try:
        code, report = _check(
            tmp_path, "--adapter", adapter.address, "--xds", "both", "--transport", "all"
        )
    finally:
        adapter.stop()
    assert code == 0 and report["passed"] is True
    assert report["skipped"] == ["delta", "delta per-type", "sotw per-type"]
    [ran] = [v for v in report["variants"] if "skipped" not in v]
    assert ran["variant"] == "sotw" and ran["examples"] >= 3
    skipped = {v["variant"]: v["skipped"] for v in report["variants"] if "skipped" in v}
    assert skipped["delta"] == "the server (sotw only) lacks the delta-ads transport"
