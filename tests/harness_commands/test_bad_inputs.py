"""Bad input files make the commands exit 2 with a message naming the file, never a traceback."""

from __future__ import annotations

import pytest

from harness.commands.cli import main

ROUTE = b"""apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: a
spec:
  parentRefs: [{name: gw}]
"""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (ROUTE + b"  labels: {team: caf\xe9}\n", "not UTF-8: byte 0xe9"),
        (b"[" * 5000, "nested more than"),
        (ROUTE + ROUTE, "duplicate key 'apiVersion'"),
    ],
    ids=["not-utf8", "deep", "duplicate-keys"],
)
@pytest.mark.parametrize("command", ["serve", "probe"])
def test_a_bad_manifest_exits_2_naming_the_file(tmp_path, capsys, command, content, message):
    manifest = tmp_path / "bad.yaml"
    manifest.write_bytes(content)
    requests = tmp_path / "requests.jsonl"
    requests.write_text("")
    extra = ["--requests", str(requests)] if command == "probe" else []
    assert main([command, "--manifests", str(manifest), *extra]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and message in err and "Traceback" not in err
