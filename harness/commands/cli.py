"""The routeproof command line: `python -m harness <command> ...`.

Exit codes: 0 = the property holds, 1 = a counterexample or failed check, 2 = usage or
environment error.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harness.commands.check import DEFAULT_DATABASE, describe_settings

if TYPE_CHECKING:
    from harness.lockstep.machine import Progress
    from harness.lockstep.stack import StackSettings

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")


def _smoke(args: argparse.Namespace) -> int:
    from harness.commands.smoke import SmokeFailed, run_smoke
    from harness.loopback import XdsMode

    modes: list[XdsMode] = ["delta", "sotw"] if args.xds == "both" else [args.xds]
    for mode in modes:
        try:
            run_smoke(mode)
        except SmokeFailed as failure:
            print(f"smoke: FAILED ({mode}): {failure}")
            return EXIT_FAILED
        print(f"smoke: ok ({mode})")
    return EXIT_OK


def _add_sut_options(parser: argparse.ArgumentParser, *, both: bool = False) -> None:
    from sut.controlplane import FailurePolicy
    from sut.mutants import MUTANTS

    modes = ["delta", "sotw", "both"] if both else ["delta", "sotw"]
    parser.add_argument(
        "--xds",
        choices=modes,
        default="both" if both else "delta",
        help="ADS variant Envoy uses (default: %(default)s)",
    )
    parser.add_argument(
        "--failure-policy",
        choices=[policy.value for policy in FailurePolicy],
        default=None,
        help="what a fail-closed extension failure publishes (default: keep-last-good, or what"
        " a combination mutant requires)",
    )
    parser.add_argument(
        "--mutant",
        action="append",
        default=[],
        choices=sorted(MUTANTS),
        metavar="MUTANT",
        help="switch a known bug back into the SUT (repeatable): " + ", ".join(sorted(MUTANTS)),
    )
    parser.add_argument(
        "--initial-fetch-timeout",
        type=float,
        default=1.0,
        help="seconds Envoy waits for a subscribed resource (default: %(default)s)",
    )
    parser.add_argument(
        "--strict-protocol",
        action="store_true",
        help="fail on the xDS protocol monitor's SHOULD rules too, not only its MUSTs",
    )
    parser.add_argument(
        "--translation-budget",
        type=float,
        default=0.5,
        help="seconds the extension hooks of one reconcile may take together; the liveness"
        " bound is built on it (default: %(default)s)",
    )
    _add_proxies_option(parser, every_transport=both)
    _add_gateways_option(parser)
    parser.add_argument(
        "--extensions",
        default=None,
        type=_extensions_path,
        metavar="PACKAGE.MODULE:NAME",
        help="your own operations and invariants (an Extensions value), run like the built-in"
        " ones (README: your own operations and invariants)",
    )


def _add_gateways_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gateways",
        type=int,
        choices=(1, 2),
        default=1,
        metavar="N",
        help="Gateways: 2 adds a second one (gw-2) with one Envoy on a node id of its own,"
        " created and deleted as the run goes (default: %(default)s)",
    )


def _extensions_path(path: str) -> str:
    from harness.lockstep import extensions

    try:
        extensions.load(path)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return path


TRANSPORTS = ("ads", "per-type")


def _add_proxies_option(parser: argparse.ArgumentParser, *, every_transport: bool = True) -> None:
    parser.add_argument(
        "--transport",
        choices=[*TRANSPORTS, "all"] if every_transport else list(TRANSPORTS),
        default="ads",
        help="how the Envoys fetch: one ADS stream, or a stream per type (each through a relay"
        " of its own); all = both, one after the other (default: %(default)s)",
    )
    parser.add_argument(
        "--proxies",
        type=int,
        default=1,
        metavar="N",
        help="Envoy replicas of the Gateway: one node id, one xDS connection each; operations on"
        " a connection or an Envoy pick a replica (default: %(default)s)",
    )
    parser.add_argument(
        "--grpc-clients",
        type=int,
        default=0,
        metavar="N",
        help="proxyless gRPC clients beside the Envoys, on the proxyless snapshot; checked after"
        " every step by their CSDS and their calls (default: %(default)s)",
    )


def _add_adapter_options(parser: argparse.ArgumentParser, *, foreign: bool = True) -> None:
    if foreign:
        parser.add_argument(
            "--adapter",
            default=None,
            metavar="HOST:PORT|reference",
            help="put the xDS server behind this adapter under test instead of routeproof's own"
            " (reference: start routeproof's reference adapter, server-side mutants as its"
            " flags); variants it lacks are skipped and reported",
        )
        parser.add_argument(
            "--xds-server",
            default=None,
            metavar="HOST:PORT",
            help="the external server's ADS address (default: the first its Capabilities name)",
        )
    else:
        parser.add_argument(
            "--adapter",
            default=None,
            choices=["reference"],
            help="run every search through routeproof's reference adapter process (server-side"
            " mutants as its flags, the control plane's in the harness's runner)",
        )


def _stack_settings(
    args: argparse.Namespace, mode: str, transport: str | None = None
) -> StackSettings:
    """The settings the options say, in `mode` and `transport` (default: `--transport`)."""
    from harness.commands.external import external_server
    from harness.lockstep.stack import StackSettings
    from sut.controlplane import FailurePolicy
    from sut.mutants import Mutants

    mutants = Mutants.of(args.mutant)
    external = external_server(getattr(args, "adapter", None), getattr(args, "xds_server", None))
    policy = args.failure_policy or mutants.failure_policy() or FailurePolicy.KEEP_LAST_GOOD.value
    return StackSettings(
        mode=mode,  # type: ignore[arg-type]
        failure_policy=FailurePolicy(policy),
        mutants=mutants,
        initial_fetch_timeout=args.initial_fetch_timeout,
        strict_protocol=args.strict_protocol,
        translation_budget=args.translation_budget,
        proxies=args.proxies,
        gateways=getattr(args, "gateways", 1),
        grpc_clients=args.grpc_clients,
        transport=transport or args.transport,  # type: ignore[arg-type]
        external=external,
        extensions=getattr(args, "extensions", None),
    )


def _add_workers_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help=f"{what}; each runs its own stacks (default: the number of cores, %(default)s)",
    )


def _modes(args: argparse.Namespace) -> list[str]:
    return ["delta", "sotw"] if args.xds == "both" else [args.xds]


def _transports(args: argparse.Namespace) -> list[str]:
    return list(TRANSPORTS) if args.transport == "all" else [args.transport]


def _variants(args: argparse.Namespace) -> list[tuple[str, str]]:
    """Every (mode, transport) `--xds` and `--transport` name: up to four."""
    return [(mode, transport) for transport in _transports(args) for mode in _modes(args)]


def variant_label(mode: str, transport: str) -> str:
    """How runs name a variant: the mode alone over ADS (as always), else "delta per-type"."""
    return mode if transport == "ads" else f"{mode} {transport}"


def _scenario(args: argparse.Namespace) -> int:
    from harness.commands.scenarios import run_seed

    settings = _stack_settings(args, args.xds)
    print(f"scenario seed ({describe_settings(settings)})")
    passed = run_seed(settings)
    print(f"scenario seed: {'ok' if passed else 'FAILED: a route does not resolve as it should'}")
    return EXIT_OK if passed else EXIT_FAILED


def _check(args: argparse.Namespace) -> int:
    from harness.commands.check import example_database

    if args.workers < 1 or args.proxies < 1 or args.grpc_clients < 0:
        print(
            "check: --workers and --proxies must be at least 1, --grpc-clients at least 0",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        example_database(args.database)
        from harness.commands.external import check_foreign

        check_foreign(_stack_settings(args, "delta", "ads"), args.workers)
    except ValueError as error:
        print(f"check: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return _check_variants(args)
    finally:
        if args.adapter is not None:
            from harness.commands.external import stop_reference_adapter

            stop_reference_adapter()


def _check_variants(args: argparse.Namespace) -> int:
    from collections import Counter

    from harness.commands.check import (
        CheckOptions,
        format_counterexample,
        format_kinds,
        progress_printer,
        run_check,
        save_replay,
    )
    from harness.commands.workers import check_on_workers
    from harness.loopback.adapter import AdapterError, Capabilities

    in_ci = os.environ.get("CI", "").lower() == "true"
    seed = args.seed
    if seed is None and args.workers > 1:  # each worker's seed derives from the run's
        seed = 0 if in_ci else random.SystemRandom().randrange(2**32)
    total_examples = total_steps = 0
    kinds: Counter[str] = Counter()
    reported: list[dict[str, object]] = []

    def stats() -> None:
        if args.stats:
            print(format_kinds(kinds))
        if args.json:
            from harness.commands.report import write_report

            command = {
                key: value for key, value in sorted(vars(args).items()) if key not in ("run",)
            }
            write_report(Path(args.json), command | {"seed": seed}, reported)

    capabilities: Capabilities | None = None
    for mode, transport in _variants(args):
        label = variant_label(mode, transport)
        settings = _stack_settings(args, mode, transport)
        if settings.external is not None:
            from harness.commands.external import capabilities_of, lacking

            try:
                capabilities = capabilities or capabilities_of(settings)
            except AdapterError as error:
                print(f"check: {error}", file=sys.stderr)
                return EXIT_USAGE
            reason = lacking(settings, capabilities)
            if reason is not None:
                print(f"[{label}] skipped: {reason}", file=sys.stderr)
                if args.json:
                    from harness.commands.report import skipped_report

                    reported.append(skipped_report(label, settings, reason))
                continue
        options = CheckOptions(
            stack=settings,
            max_examples=args.max_examples,
            steps=args.steps,
            seed=seed,
            shrink_seconds=args.shrink_seconds,
            derandomize=seed is None and in_ci,
            database=args.database,
        )
        seeded = f", seed {seed}" if seed is not None else ""
        print(
            f"check: {describe_settings(settings)}; {args.workers} worker(s){seeded},"
            f" database {args.database}",
            file=sys.stderr,
        )
        if args.workers > 1:
            result = check_on_workers(options, args.workers, label)
        else:
            result = run_check(options, progress_printer(label, args.max_examples))
        total_examples += result.examples
        total_steps += result.steps
        kinds.update(result.kinds)
        path = save_replay(result.failure, settings) if result.failure is not None else None
        if args.json:
            from harness.commands.report import variant_report

            reported.append(variant_report(label, settings, result, path))
        if not result.passed:
            stats()
            if result.failure is None or path is None:
                print(f"check: the run failed without a recorded counterexample: {result.error}")
                return EXIT_FAILED
            print(format_counterexample(result.failure, f"python -m harness replay {path}"))
            first = result.seconds_to_failure or 0.0
            print(
                f"time to first failure {first:.1f} s, to the shrunk result {result.seconds:.1f} s"
            )
            print(f"check: counterexample in {len(result.failure.steps)} steps ({label})")
            return EXIT_FAILED
        discarded = (
            f"; {result.discarded} discarded as inconclusive (a healthy extension starved of CPU"
            " missed its deadline)"
            if result.discarded
            else ""
        )
        print(
            f"[{label}] passed {result.examples} examples, {result.steps} steps in"
            f" {result.seconds:.0f} s ({result.steps / max(result.seconds, 1e-9):.1f} steps/s)"
            f"{discarded}",
            file=sys.stderr,
        )
    stats()
    variants = args.xds if args.transport == "ads" else f"{args.xds}, {args.transport}"
    print(f"check: passed {total_examples} examples, {total_steps} steps ({variants})")
    return EXIT_OK


def _mutants(args: argparse.Namespace) -> int:
    from harness.commands.check import progress_printer
    from harness.commands.external import external_server
    from harness.commands.kill_table import run_kill_table, update_readme

    printers: dict[str, Callable[[Progress], None]] = {}

    def on_progress(label: str, progress: Progress) -> None:
        printers.setdefault(label, progress_printer(label, args.examples))(progress)

    if args.workers < 1 or args.proxies < 1 or args.grpc_clients < 0:
        print(
            "mutants: --workers and --proxies must be at least 1, --grpc-clients at least 0",
            file=sys.stderr,
        )
        return EXIT_USAGE
    clients = f", {args.grpc_clients} gRPC client(s)" if args.grpc_clients else ""
    through = f", through the {args.adapter} adapter" if args.adapter else ""
    print(
        f"mutants: {args.workers} worker(s), {args.proxies} proxy(ies){clients}{through}",
        file=sys.stderr,
    )
    table = run_kill_table(
        _modes(args),
        transports=_transports(args),
        examples=args.examples,
        budget_seconds=args.budget_seconds,
        steps=args.steps,
        seed=args.seed,
        only=args.only,
        on_progress=on_progress,
        on_result=lambda line: print(line, file=sys.stderr, flush=True),
        witnesses=Path(args.witnesses) if args.witnesses else None,
        workers=args.workers,
        proxies=args.proxies,
        grpc_clients=args.grpc_clients,
        external=external_server(args.adapter, None),
        gateways=args.gateways,
    )
    print(table.as_json() if args.json else table.as_markdown())
    if args.readme:
        update_readme(Path(args.readme), table)
    return EXIT_OK if table.all_killed and table.baseline_passed else EXIT_FAILED


def _replay(args: argparse.Namespace) -> int:
    from harness.commands.check import load_replay, replay

    try:
        settings, steps = load_replay(Path(args.file))
    except ValueError as error:
        print(f"replay: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(f"replay: {len(steps)} steps ({describe_settings(settings)})")
    violations = replay(settings, steps)
    print("replay: counterexample reproduced" if violations else "replay: every invariant held")
    return EXIT_FAILED if violations else EXIT_OK


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

    scenario = commands.add_parser(
        "scenario", help="run a fixed reproduction (seed: Envoy Gateway issue 5595)"
    )
    scenario.add_argument("name", choices=["seed"], help="the scenario to run")
    _add_sut_options(scenario)
    scenario.set_defaults(run=_scenario)

    check = commands.add_parser(
        "check",
        help="Hypothesis state machine against real Envoy: find and shrink counterexamples",
    )
    _add_sut_options(check, both=True)
    check.add_argument(
        "--max-examples",
        type=int,
        default=50,
        help="examples per mode, split between the workers (default: %(default)s)",
    )
    check.add_argument(
        "--steps", type=int, default=12, help="steps per example (default: %(default)s)"
    )
    check.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed the search (worker i's seed derives from it and i); reproducible with"
        " --workers 1 and a fresh or no database",
    )
    check.add_argument(
        "--shrink-seconds",
        type=float,
        default=90.0,
        help="stop shrinking a counterexample after this long (default: %(default)s)",
    )
    _add_workers_option(check, "Hypothesis engines, one process each, sharing the database")
    check.add_argument(
        "--database",
        default=DEFAULT_DATABASE,
        metavar="PATH|redis://HOST:PORT/DB|none",
        help="example database the engines share: a directory, a Redis server (engines on"
        " several machines), or none. Every run first replays the failures saved there, so a"
        " shared live database makes a run depend on what other engines saved: reproduce a run"
        " from its replay file, or with --workers 1, --seed and a fresh database or none"
        " (default: %(default)s)",
    )
    check.add_argument(
        "--stats",
        action="store_true",
        help="print how many operations of each kind ran, over all examples and workers",
    )
    check.add_argument(
        "--json",
        default=None,
        metavar="FILE",
        help="also write the run as a JSON report (verdict, counts, counterexample) to FILE",
    )
    _add_adapter_options(check)
    check.set_defaults(run=_check)

    mutants = commands.add_parser(
        "mutants",
        help="run check against the SUT and every known bug class; print the kill table",
    )
    mutants.add_argument("--xds", choices=["delta", "sotw", "both"], default="both")
    mutants.add_argument(
        "--examples",
        type=int,
        default=100,
        help="examples per mutant and mode before it counts as survived; the baselines run as"
        " many (default: %(default)s)",
    )
    mutants.add_argument(
        "--budget-seconds",
        type=float,
        default=None,
        help="also stop a search after this long (default: no time cap, so the table is as"
        " strong on a loaded machine)",
    )
    mutants.add_argument(
        "--steps", type=int, default=12, help="steps per example (default: %(default)s)"
    )
    mutants.add_argument("--seed", type=int, default=20261124, help="seed of every search")
    _add_workers_option(
        mutants,
        "processes, each searching one (mutant, mode) pair at a time; the budget is in examples,"
        " so more workers never weaken a search",
    )
    mutants.add_argument(
        "--only", action="append", default=None, metavar="MUTANT", help="run only these"
    )
    _add_proxies_option(mutants)
    _add_gateways_option(mutants)
    _add_adapter_options(mutants, foreign=False)
    mutants.add_argument("--json", action="store_true", help="print the table as JSON")
    mutants.add_argument(
        "--readme", default=None, metavar="FILE", help="rewrite the kill table in FILE"
    )
    mutants.add_argument(
        "--witnesses",
        default=None,
        metavar="DIR",
        help="write each kill's shrunk counterexample to DIR/<mutant>-<mode>.json",
    )
    mutants.set_defaults(run=_mutants)

    replay = commands.add_parser("replay", help="replay a counterexample file written by check")
    replay.add_argument("file", help="runs/counterexample-....json")
    replay.set_defaults(run=_replay)
    from harness.commands.explore import add_explore_command
    from harness.commands.serve import add_serve_commands

    add_explore_command(commands, _add_sut_options, _stack_settings)
    add_serve_commands(commands)
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
