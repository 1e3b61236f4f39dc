"""`check --json FILE`: the run as a machine-readable document, for CI systems and dashboards.

One document per run: the command's settings, then one entry per variant (xDS mode, transport)
with its verdict, counts and times (or, for a variant the xDS server under test lacks, why it
was skipped), and for a failure the shrunk steps (each operation described
and encoded as in replay files), the violations and the replay file. The schema is versioned
(`schema`); a field is added, never renamed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.commands.check import CheckResult, describe_settings
from harness.lockstep.replay_files import encode_operations
from harness.lockstep.stack import StackSettings

__all__ = ["SCHEMA", "skipped_report", "variant_report", "write_report"]

SCHEMA = "routeproof.check/v1"


def variant_report(
    label: str, settings: StackSettings, result: CheckResult, replay: Path | None = None
) -> dict[str, Any]:
    """One variant's entry of the report."""
    entry: dict[str, Any] = {
        **_variant(label, settings),
        "passed": result.passed,
        "examples": result.examples,
        "steps": result.steps,
        "seconds": round(result.seconds, 3),
        "operations": dict(sorted(result.kinds.items())),
    }
    if result.seconds_to_failure is not None:
        entry["seconds_to_failure"] = round(result.seconds_to_failure, 3)
    if result.error:
        entry["error"] = result.error
    failure = result.failure
    if failure is not None:
        entry["counterexample"] = {
            "steps": [
                {
                    "operations": [operation.describe() for operation in step],
                    "encoded": json.loads(encode_operations(list(step))),
                }
                for step in failure.steps
            ],
            "violations": [
                {
                    "invariant": violation.invariant,
                    "strength": str(violation.strength),
                    "summary": violation.summary,
                    "details": list(violation.details),
                }
                for violation in failure.violations
            ],
            "exchange": list(failure.exchanges),
            "replay": str(replay) if replay is not None else None,
        }
    return entry


def skipped_report(label: str, settings: StackSettings, reason: str) -> dict[str, Any]:
    """The entry of a variant the server under test cannot run (its Capabilities lack it)."""
    return {**_variant(label, settings), "skipped": reason}


def _variant(label: str, settings: StackSettings) -> dict[str, Any]:
    """What every entry says of its variant: its label, settings and server."""
    external = settings.external
    server = (
        {} if external is None else {"adapter": external.adapter, "xds_server": external.xds_server}
    )
    return {
        "variant": label,
        "settings": describe_settings(settings),
        "mode": settings.mode,
        "transport": settings.transport,
        "proxies": settings.proxies,
        "grpc_clients": settings.grpc_clients,
        **server,
    }


def write_report(path: Path, command: dict[str, Any], variants: list[dict[str, Any]]) -> None:
    """Write the whole run's document (`-` for standard output is the caller's business)."""
    document = {
        "schema": SCHEMA,
        "command": command,
        "passed": all(entry.get("passed", True) for entry in variants),
        "variants": variants,
        "skipped": [entry["variant"] for entry in variants if "skipped" in entry],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, sort_keys=False) + "\n")
