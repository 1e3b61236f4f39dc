"""`python -m harness probe` and `python -m harness serve` as users run them (subprocesses)."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from harness.commands.cli import main
from harness.commands.serve import RequestLineError, load_manifest_paths, parse_requests
from harness.loopback.probe import probe
from sut.errors import ManifestError
from tests.e2e.served import MANIFESTS

ROOT = Path(__file__).resolve().parents[2]
_SERVING = re.compile(
    r"^serving (?P<gateway>\S+) listener (?P<listener>\S+) (?P<protocol>HTTPS?) port (?P<port>\d+)"
    r" -> (?P<address>127\.\d+\.\d+\.\d+):(?P<local>\d+)$"
)


def _harness(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _requests_file(directory: Path, lines: Sequence[dict[str, Any] | str]) -> Path:
    path = directory / "requests.jsonl"
    path.write_text(
        "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    )
    return path


def _json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_probe_prints_one_json_line_per_request(tmp_path: Path) -> None:
    requests: list[dict[str, Any]] = [
        {"gateway": "default/alpha", "port": 80, "scheme": "http", "host": "app.example.com",
         "path": "/hello?x=1", "headers": {"X-Test": "1"}},
        {"gateway": "default/beta", "port": 80, "scheme": "http", "host": "app.example.com",
         "path": "/", "method": "POST"},
        {"gateway": "default/alpha", "port": 80, "scheme": "http", "host": "app.example.com",
         "path": "/moved"},
        {"gateway": "default/alpha", "port": 80, "scheme": "http", "host": "nobody.example.com",
         "path": "/"},
        {"gateway": "default/alpha", "port": 9999, "scheme": "http", "host": "app.example.com",
         "path": "/"},
    ]  # fmt: skip
    result = _harness(
        "probe",
        "--manifests",
        str(MANIFESTS / "gateways.yaml"),
        "--requests",
        str(_requests_file(tmp_path, requests)),
    )
    assert result.returncode == 0, result.stderr
    answers = _json_lines(result.stdout)
    assert [answer["request"] for answer in answers] == requests
    alpha, beta, redirect, unknown_host, unknown_port = answers

    assert alpha["status"] == 200
    assert alpha["echo"]["service"] == "alpha"
    assert alpha["echo"]["path"] == "/hello?x=1"
    assert alpha["echo"]["headers"]["X-Test"] == ["1"]
    assert alpha["response_headers"]["content-type"] == "application/json"
    assert all(name == name.lower() for name in alpha["response_headers"])

    assert (beta["status"], beta["echo"]["service"], beta["echo"]["method"]) == (
        200,
        "beta",
        "POST",
    )

    assert redirect["status"] == 302
    assert redirect["echo"] is None
    assert redirect["response_headers"]["location"] == "http://app.example.com/here"

    assert (unknown_host["status"], unknown_host["echo"]) == (404, None)

    assert unknown_port["status"] is None
    assert "port 9999" in unknown_port["error"]

    # Status lines go to stderr, one per Gateway listener.
    served = [m.groupdict() for line in result.stderr.splitlines() if (m := _SERVING.match(line))]
    assert {(s["gateway"], s["listener"], s["port"]) for s in served} == {
        ("default/alpha", "http", "80"),
        ("default/beta", "web", "80"),
        ("default/gamma", "http", "80"),
        ("default/delta", "http", "8080"),
    }
    assert len({s["local"] for s in served}) == 4


def test_probe_gateway_class_filter(tmp_path: Path) -> None:
    requests = [
        {"gateway": "default/alpha", "port": 80, "scheme": "http", "host": "a.example.com",
         "path": "/shared"},
        {"gateway": "default/gamma", "port": 80, "scheme": "http", "host": "a.example.com",
         "path": "/"},
    ]  # fmt: skip
    result = _harness(
        "probe",
        "--manifests",
        str(MANIFESTS / "gateways.yaml"),
        "--gateway-class",
        "other",
        "--requests",
        str(_requests_file(tmp_path, requests)),
    )
    assert result.returncode == 0, result.stderr
    alpha, gamma = _json_lines(result.stdout)
    assert alpha["status"] is None and "not served" in alpha["error"]
    assert gamma["status"] == 200 and gamma["echo"]["service"] == "gamma"


def test_probe_https_and_redirect_ports(tmp_path: Path) -> None:
    requests = [
        {"gateway": "default/filters", "port": 8080, "scheme": "http",
         "host": "redirect.example.com", "path": "/same-host"},
        {"gateway": "default/filters", "port": 443, "scheme": "https",
         "host": "redirect.example.com", "path": "/same-host"},
        {"gateway": "default/filters", "port": 80, "scheme": "http",
         "host": "headers.example.com", "path": "/response",
         "headers": {"X-Echo-Set-Header": "X-Header-Add-Append:one"}},
    ]  # fmt: skip
    result = _harness(
        "probe",
        "--manifests",
        str(MANIFESTS / "filters.yaml"),
        "--requests",
        str(_requests_file(tmp_path, requests)),
    )
    assert result.returncode == 0, result.stderr
    alt, tls, headers = _json_lines(result.stdout)
    assert alt["response_headers"]["location"] == "http://redirect.example.com:8080/moved"
    assert tls["response_headers"]["location"] == "https://redirect.example.com/moved"
    assert headers["response_headers"]["x-header-add-append"] in (
        ["one", "header-val-2"],
        "one,header-val-2",
    )


def test_probe_quickstart_with_objects_the_gateway_does_not_read(tmp_path: Path) -> None:
    requests = [
        {"gateway": "default/eg", "port": 80, "scheme": "http", "host": "www.example.com",
         "path": "/get"},
        {"gateway": "default/eg", "port": 80, "scheme": "http", "host": "grpc.example.com",
         "path": "/"},
    ]  # fmt: skip
    result = _harness(
        "probe",
        "--manifests",
        str(MANIFESTS / "quickstart.yaml"),
        "--requests",
        str(_requests_file(tmp_path, requests)),
    )
    assert result.returncode == 0, result.stderr
    www, grpc = _json_lines(result.stdout)
    assert (www["status"], www["echo"]["service"]) == (200, "backend")
    assert grpc["status"] == 404  # the GRPCRoute is not served
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped")]
    assert [line.split(" (")[1].split(")")[0] for line in skipped] == [
        "v1 ServiceAccount backend",
        "apps/v1 Deployment backend",
        "gateway.networking.k8s.io/v1 GRPCRoute backend-grpc",
    ]


def test_unread_objects_are_blanked_in_place(tmp_path: Path) -> None:
    """Skipping a Deployment keeps the other documents' numbers: errors still point at them."""
    manifest = tmp_path / "app.yaml"
    manifest.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 1}\n"
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\n"
        "spec: {ports: [{port: web}]}\n"
    )
    skipped: list[str] = []
    with pytest.raises(ManifestError) as raised:
        load_manifest_paths([manifest], skipped=skipped)
    assert f"{manifest}#1 (Service default/web) field spec.ports[0].port" in str(raised.value)
    assert skipped == [f"{manifest}#0 (apps/v1 Deployment web)"]


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [("gateway.networking.k8s.io/v1", "HTTPRoutes"), ("v1", "Servce")],
)
def test_misspelt_kinds_are_errors_not_skipped(tmp_path: Path, api_version: str, kind: str) -> None:
    manifest = tmp_path / "typo.yaml"
    manifest.write_text(f"apiVersion: {api_version}\nkind: {kind}\nmetadata: {{name: x}}\n")
    with pytest.raises(ManifestError, match="unsupported kind"):
        load_manifest_paths([manifest])


def test_malformed_manifest_exits_2_naming_document_and_field(tmp_path: Path) -> None:
    manifest = tmp_path / "broken.yaml"
    manifest.write_text(
        (MANIFESTS / "weights.yaml").read_text().replace("port: 80\n", 'port: "eighty"\n', 1)
    )
    requests = _requests_file(
        tmp_path, [{"gateway": "default/split", "port": 80, "host": "h", "path": "/"}]
    )
    result = _harness("probe", "--manifests", str(manifest), "--requests", str(requests))
    assert result.returncode == 2
    assert result.stdout == ""
    assert "broken.yaml#0 (Gateway default/split)" in result.stderr
    assert "spec.listeners[0].port" in result.stderr
    assert "must be an integer" in result.stderr


def test_malformed_request_line_exits_2_naming_the_line(tmp_path: Path) -> None:
    good = {"gateway": "default/split", "port": 80, "host": "h", "path": "/"}
    requests = _requests_file(tmp_path, [good, "", '{"gateway": "default/split", "port": 80}'])
    result = _harness(
        "probe", "--manifests", str(MANIFESTS / "weights.yaml"), "--requests", str(requests)
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"{requests}:3: missing field(s) host, path" in result.stderr


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not JSON"),
        ('{"gateway": "default/split", "port": "80", "host": "h", "path": "/"}', "port"),
        ('{"gateway": "default/split", "port": 0, "host": "h", "path": "/"}', "port"),
        ('{"gateway": "default/split", "port": 80, "host": "h"}', "missing field(s) path"),
        ('{"gateway": "a/b/c", "port": 80, "host": "h", "path": "/"}', "gateway"),
        ('{"gateway": "/b", "port": 80, "host": "h", "path": "/"}', "gateway"),
        ('{"gateway": "default/split", "port": 80, "host": "h", "path": "x"}', "path"),
        ('{"gateway": "g", "port": 80, "host": "", "path": "/"}', "host"),
        ('{"gateway": "g", "port": 80, "host": "h", "path": "/", "scheme": "ftp"}', "scheme"),
        ('{"gateway": "g", "port": 80, "host": "h", "path": "/", "header": {}}', "unknown"),
        ('{"gateway": "g", "port": 80, "host": "h", "path": "/", "headers": {"a": 1}}', "headers"),
        ('{"gateway": "g", "port": 80, "host": "h", "path": "/", "method": "GE T"}', "method"),
        ('["gateway"]', "JSON object"),
    ],
)
def test_malformed_request_lines_are_refused(tmp_path: Path, line: str, message: str) -> None:
    """In process (same code path as the CLI): every bad line is refused by number, before
    anything starts."""
    good = {"gateway": "default/split", "port": 80, "host": "h", "path": "/"}
    requests = _requests_file(tmp_path, [good, "", line])
    with pytest.raises(RequestLineError) as raised:
        parse_requests(requests.read_text(), source="requests.jsonl")
    assert raised.value.line == 3
    assert str(raised.value).startswith("requests.jsonl:3: ")
    assert message in str(raised.value)


def test_request_line_defaults() -> None:
    (request,) = parse_requests(
        '{"gateway": "split", "port": 80, "host": "h", "path": "/", "method": "post"}'
    )
    assert (request.gateway.namespace, request.gateway.name) == ("default", "split")
    assert (request.scheme, request.method, request.headers, request.sni) == (
        "http",
        "POST",
        (),
        None,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["probe", "--manifests", "does-not-exist.yaml", "--requests", "x.jsonl"],
        ["probe", "--manifests", str(MANIFESTS / "weights.yaml"), "--requests", "missing.jsonl"],
        ["probe", "--manifests", str(MANIFESTS / "weights.yaml")],
        ["serve"],
        ["serve", "--manifests"],
    ],
)
def test_usage_errors_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """In process through `harness.commands.cli.main`: nothing is started for these."""
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err


def test_manifest_directory_loads_every_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"no \*\.yaml"):
        load_manifest_paths([tmp_path])
    for name in ("weights.yaml", "https.yaml"):
        (tmp_path / name).write_text((MANIFESTS / name).read_text())
    resources = load_manifest_paths([tmp_path])
    assert {str(gateway.key) for gateway in resources.gateways} == {
        "default/split",
        "tls/web",
        "tls/mixed",
    }


@pytest.mark.parametrize("command", ["serve", "probe"])
def test_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "--manifests" in out and "--gateway-class" in out


# ------------------------------------------------------------------ serve


def _read_until_ready(process: subprocess.Popen[str], timeout: float) -> list[str]:
    """Lines printed by `serve` up to its "ready" line (fails after `timeout`)."""
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    buffer = ""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"serve printed no 'ready' line in {timeout} s: {lines}"
            if not selector.select(remaining):
                continue
            chunk = os.read(process.stdout.fileno(), 65536).decode()
            assert chunk, f"serve exited early ({process.poll()}): {lines}"
            buffer += chunk
            *complete, buffer = buffer.split("\n")
            lines.extend(complete)
            if any(line.startswith("ready") for line in complete):
                return lines


@pytest.fixture
def serve_process() -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", "serve", "--manifests", str(MANIFESTS / "https.yaml")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal job has
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=30)


@pytest.mark.parametrize(
    ("stop_signal", "whole_group"),
    [(signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["ctrl-c-to-process-group", "sigterm-to-process"],
)
def test_serve_prints_listeners_serves_and_stops_cleanly(
    serve_process: subprocess.Popen[str], stop_signal: signal.Signals, whole_group: bool
) -> None:
    lines = _read_until_ready(serve_process, timeout=30)
    served = {
        (m["gateway"], m["listener"]): m.groupdict()
        for line in lines
        if (m := _SERVING.match(line))
    }
    assert set(served) == {
        ("tls/web", "foo"),
        ("tls/web", "bar"),
        ("tls/web", "wildcard"),
        ("tls/web", "http"),
        ("tls/mixed", "any"),
        ("tls/mixed", "second"),
        ("tls/mixed", "wildcard"),
        ("tls/mixed", "fourth"),
    }
    foo, http = served[("tls/web", "foo")], served[("tls/web", "http")]
    assert (foo["protocol"], foo["port"], http["protocol"], http["port"]) == (
        "HTTPS",
        "443",
        "HTTP",
        "80",
    )
    assert foo["local"] == served[("tls/web", "bar")]["local"]  # one Envoy listener, SNI chains

    reply = probe(foo["address"], int(foo["local"]), "foo.example.com", "/", scheme="https")
    assert reply.status == 200
    assert reply.json()["service"] == "foo"

    if whole_group:  # Ctrl-C reaches Envoy too
        os.killpg(serve_process.pid, stop_signal)
    else:
        serve_process.send_signal(stop_signal)
    stdout, stderr = serve_process.communicate(timeout=30)
    assert serve_process.returncode == 0, stderr
    with pytest.raises(ProcessLookupError):  # Envoy and every other child are gone too
        os.killpg(serve_process.pid, 0)
    assert stdout.strip().endswith("stopped")
    assert "Traceback" not in stderr
    closed = probe(foo["address"], int(foo["local"]), "foo.example.com", "/", scheme="https")
    assert closed.status is None
