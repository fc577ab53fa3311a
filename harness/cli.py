"""Command line: ``python -m harness {run,validate,list,report}``."""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

from harness.errors import EXIT_BAD_INPUT, EXIT_REGRESSION, HarnessError, SuiteErrors, one_line


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    from harness.quiet import quiet_third_party_warnings

    quiet_third_party_warnings(show=args.debug)
    # only our own progress at INFO: runtimes log every graph fusion there
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    level = logging.WARNING if args.quiet else logging.DEBUG if args.debug else logging.INFO
    logging.getLogger("harness").setLevel(level)
    try:
        return args.handler(args)
    except HarnessError as error:
        if args.debug:
            traceback.print_exc()
        problems = error.problems if isinstance(error, SuiteErrors) else [error]
        for problem in problems:
            print(f"error: {one_line(str(problem) or type(problem).__name__)}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted: rows already written are kept", file=sys.stderr)
        return 130


class _OneLineParser(argparse.ArgumentParser):
    """Bad arguments are one line and exit 2, like every other bad input (not usage plus an error)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {self.prog}: {one_line(message)} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="harness", description=__doc__)
    common = _OneLineParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks for errors, and each round's phases")
    common.add_argument("--quiet", action="store_true", help="only warnings and errors")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", parents=[common], help="run a suite and write results and a report")
    run.add_argument("suite", type=Path)
    run.add_argument("--out", type=Path, help="output directory (default: the suite's output.dir)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--fresh", action="store_true", help="start over instead of resuming an interrupted run")
    run.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="run the cells on a Ray cluster (host:port, ray://host:port or auto) by the suite's hardware selectors",
    )
    run.set_defaults(handler=_run)

    validate = commands.add_parser("validate", parents=[common], help="check suite files without running")
    validate.add_argument("suites", type=Path, nargs="+")
    validate.set_defaults(handler=_validate)

    listing = commands.add_parser("list", parents=[common], help="show exporters and backends")
    listing.set_defaults(handler=_list)

    compare = commands.add_parser("compare", parents=[common], help="compare two results files cell by cell")
    compare.add_argument("old", type=Path)
    compare.add_argument("new", type=Path)
    compare.add_argument("--threshold", type=float, default=0.10, help="relative p50 growth that counts (0.10)")
    compare.add_argument(
        "--drift-allowance",
        type=float,
        default=0.20,
        help="how far the baseline cell itself may move, as machine drift, before it counts (0.20)",
    )
    compare.add_argument("--alpha", type=float, default=0.05, help="significance level of the Welch test (0.05)")
    compare.add_argument(
        "--normalize",
        choices=["baseline", "none"],
        default="baseline",
        help="judge each cell relative to its run's baseline cell, round by round (default), or by absolute p50",
    )
    compare.add_argument(
        "--across-machines",
        action="store_true",
        help="allow results from different environments, suites or code versions (to compare hardware)",
    )
    compare.set_defaults(handler=_compare)

    report = commands.add_parser("report", parents=[common], help="render a report from results files")
    report.add_argument("results", type=Path, nargs="+")
    report.add_argument("-o", "--output", type=Path, required=True)
    report.add_argument("--title", default="Benchmark report")
    report.set_defaults(handler=_report)
    return parser


def _registries():  # noqa: ANN202
    from harness.registry import backends, exporters

    return exporters(), backends()


def _validate(args: argparse.Namespace) -> int:
    from harness.data.splits import hub_reachable
    from harness.preflight import preflight
    from harness.run.plan import count_cells
    from harness.suite import load_suite

    exporters, backends = _registries()
    failed = False
    for path in args.suites:  # every file, every problem: a fix-rerun loop per typo wastes time
        file = str(path)
        try:
            suite = load_suite(path, exporters, backends)
            reachable = suite.task.source != "local" and hub_reachable()
            preflight(suite, file, reachable, registries=(exporters, backends))
            cells, variants = count_cells(suite, exporters, backends)
        except HarnessError as error:
            if args.debug:
                traceback.print_exc()
            failed = True
            problems = error.problems if isinstance(error, SuiteErrors) else [error]
            for line in (line for problem in problems for line in str(problem).splitlines()):
                where = "" if line.startswith(file) else f"{file}: "
                print(f"error: {one_line(where + line)}", file=sys.stderr)
            continue
        serving = f" + {variants * len(suite.scenarios)} scenario cells at most" if suite.scenarios else ""
        machines = f", on each of {len(suite.hardware)} machines with --cluster" if suite.hardware else ""
        counts = f"{cells} cells{serving}{machines}"
        print(f"{one_line(file)}: ok (suite '{suite.name}', hash {suite.content_hash()}, {counts})")
    return EXIT_BAD_INPUT if failed else 0


def _list(args: argparse.Namespace) -> int:
    from harness.registry import BrokenAdapter
    from harness.suite import DEVICES

    exporters, backends = _registries()
    print("exporters:")
    for name, adapter in exporters.entries().items():
        reason = adapter.reason if isinstance(adapter, BrokenAdapter) else adapter.unavailable_reason()
        detail = "" if isinstance(adapter, BrokenAdapter) else f"format {adapter.format}{_versions(adapter)}"
        print(f"  {name:<22} {'unavailable: ' + reason if reason else 'available'}  {detail}".rstrip())
    print("backends:")
    for name, adapter in backends.entries().items():
        if isinstance(adapter, BrokenAdapter):
            print(f"  {name:<22} unavailable: {adapter.reason}")
            continue
        for device in DEVICES:
            reason = adapter.unavailable_reason(device)
            status = f"unavailable: {reason}" if reason else f"available{_versions(adapter)}"
            print(f"  {name + ' [' + device + ']':<22} {status}")
    return 0


def _versions(adapter: Any) -> str:
    """``  (openvino 2026.4.1, ...)``: the installed packages the adapter runs."""
    versions = adapter.versions()
    return f"  ({', '.join(f'{k} {v}' for k, v in versions.items())})" if versions else ""


def _run(args: argparse.Namespace) -> int:
    from harness.data.splits import hub_reachable
    from harness.preflight import preflight
    from harness.results.rows import read_rows
    from harness.run.runner import Runner
    from harness.suite import load_suite

    exporters, backends = _registries()
    suite = load_suite(args.suite, exporters, backends)
    reachable = suite.task.source != "local" and hub_reachable()
    cluster = args.cluster or (suite.cluster.address if suite.cluster else None)
    registries = (exporters, backends)
    preflight(suite, str(args.suite), reachable, out_dir=args.out, registries=registries, fleet=bool(cluster))
    out_dir = args.out or Path(suite.output.dir)
    hardware = "fleet" if cluster else _hardware(suite.devices)
    results_path, report_path = _output_paths(out_dir, suite.output_name(hardware))
    options = {"progress": not args.no_progress, "fresh": args.fresh}
    if cluster:  # only a fleet run imports the fleet (and so Ray)
        from harness.fleet.runner import FleetRunner, cluster_config

        runner = FleetRunner(
            suite, exporters, backends, results_path, str(args.suite), cluster=cluster_config(suite, cluster), **options
        )
    else:
        runner = Runner(suite, exporters, backends, results_path, str(args.suite), **options)
    runner.run()
    rows = runner.rows_of_this_run(read_rows([results_path]))
    scenarios = runner.scenario_rows_of_this_run(read_rows([results_path], scenarios=True))
    _write_report(rows, report_path, f"{suite.name}: benchmark report", [results_path], scenarios)
    ok = sum(r["status"] == "ok" for r in rows)
    failed = sum(r["status"] in ("error", "timeout") for r in rows)
    print(f"{len(rows)} cells ({ok} ok, {failed} failed) -> {one_line(str(results_path))}")
    if scenarios:
        served = sum(r["status"] == "ok" for r in scenarios)
        broken = sum(r["status"] in ("error", "timeout") for r in scenarios)
        print(f"{len(scenarios)} scenario cells ({served} ok, {broken} failed)")
        failed += broken
    print(f"report -> {one_line(str(report_path))}")
    return EXIT_REGRESSION if failed else 0


def _hardware(devices: list[str]) -> str:
    """``cuda`` when the suite asks for CUDA and this machine has a device, else ``cpu``."""
    if "cuda" not in devices:
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _output_paths(out_dir: Path, name: str) -> tuple[Path, Path]:
    from harness.results.publish import check_report_target

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".{name}.write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise HarnessError(f"output directory {out_dir} is not writable: {error.strerror}") from None
    results, report = out_dir / f"{name}.jsonl", out_dir / f"{name}.md"
    check_report_target(report, [results])  # refused now, not after the run
    return results, report


def _write_report(rows: list[dict], path: Path, title: str, inputs: list[Path], scenarios: list[dict]) -> None:
    """Atomically: the figures and the markdown appear together, or nothing does."""
    from harness.results.publish import write_report

    write_report(rows, path, title, inputs, scenarios)


def _report(args: argparse.Namespace) -> int:
    from harness.results.publish import check_report_target
    from harness.results.rows import load_results, read_rows

    check_report_target(args.output, args.results)
    rows = load_results(args.results)
    _write_report(rows, args.output, args.title, args.results, read_rows(args.results, scenarios=True))
    print(f"{len(rows)} rows -> {one_line(str(args.output))}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    """Exit 1 when any cell regressed significantly beyond the threshold, 2 for input that cannot be compared."""
    import warnings

    from harness.errors import InputError
    from harness.results.compare import (
        check_comparable,
        check_options,
        compare_rows,
        regressed,
        render_comparison,
        unmatched,
    )
    from harness.results.rows import load_results

    check_options(args.threshold, args.alpha, args.normalize, args.drift_allowance)
    old, new = load_results([args.old]), load_results([args.new])
    check_comparable(old, new, args.across_machines)
    with warnings.catch_warnings():  # extreme values overflow a ratio: shown as inf, not a page of warnings
        warnings.simplefilter("ignore", RuntimeWarning)
        table = compare_rows(old, new, args.threshold, args.alpha, args.normalize, args.drift_allowance)
        if table.empty:
            raise InputError(f"{args.old} and {args.new} have no cell in common")
        only = unmatched(old, new)
        print(render_comparison(table, *only, args.threshold, args.alpha, args.normalize, args.drift_allowance))
        return 1 if regressed(table, args.alpha, args.drift_allowance) else 0
