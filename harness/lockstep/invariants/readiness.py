"""The readiness listener answers /ready 200 whenever the proxy holds a configuration: no
failure policy may rewrite it."""

from __future__ import annotations

from collections.abc import Mapping

from harness.lockstep.verdict import Violation
from harness.loopback.probe import probe
from sut.extension import READINESS_PREFIX

__all__ = ["readiness_violations"]


def readiness_violations(ports: Mapping[str, tuple[tuple[str, int], ...]]) -> list[Violation]:
    for name, bound in ports.items():
        if name.startswith(READINESS_PREFIX) and bound:
            address, port = bound[0]
            result = probe(address, port, "localhost", "/ready", timeout=2.0)
            if result.status == 200:
                return []
            got = result.status if result.status is not None else result.error
            return [Violation("readiness", f"/ready on {name} answered {got}, not 200")]
    return [Violation("readiness", "Envoy has no readiness listener")]
