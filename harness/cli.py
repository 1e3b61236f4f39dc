"""The routeproof command line: `python -m harness <command> ...`.

Exit codes: 0 = the property holds, 1 = a counterexample or failed check, 2 = usage or
environment error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")


def _smoke(args: argparse.Namespace) -> int:
    from harness.envoy import XdsMode
    from harness.smoke import SmokeFailed, run_smoke

    modes: list[XdsMode] = ["delta", "sotw"] if args.xds == "both" else [args.xds]
    for mode in modes:
        try:
            run_smoke(mode)
        except SmokeFailed as failure:
            print(f"smoke: FAILED ({mode}): {failure}")
            return EXIT_FAILED
        print(f"smoke: ok ({mode})")
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description="routeproof: prove that every route resolves after any sequence of changes,"
        " failures and recoveries, against real Envoy.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    smoke = commands.add_parser(
        "smoke", help="xDS server + two echo backends + real Envoy, end to end"
    )
    smoke.add_argument("--xds", choices=["delta", "sotw", "both"], default="delta")
    smoke.set_defaults(run=_smoke)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return EXIT_OK if exit_.code == 0 else EXIT_USAGE
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_USAGE
