"""The ``fastcodec bench`` command: its options, ``main``, the benchmark groups, finding
benches/ and running the suite into a results file that holds the machine and the run."""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import os
import shlex
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .compare import (
    COMPARE_RULE,
    MIN_SPREAD,
    SPREAD_FACTOR,
    compare,
    compare_lines,
    machine_differences,
)
from .machine import cpu_busy_seconds, loadavg, describe_machine, wait_idle
from .plots import import_pyplot, make_plots
from .results import BenchError, latest_results, load_results, table_lines, write_results

# --------------------------------------------------------------------------------------------
# groups


@dataclass(frozen=True)
class Group:
    files: tuple  # test files in benches/, run together
    what: str


#: The benchmark groups ``--group`` selects (pytest-benchmark group names of their benchmarks
#: start with the key: "coder" also holds "coder-batch").
GROUPS = {
    "coder": Group(
        ("test_bench_coder.py",),
        "range coder: fastcodec (1 and 2 threads) vs constriction and CompressAI's rANS coder, "
        "Msym/s, ns/symbol, MB/s, bits vs ideal; and fastcodec vs batch size (coder-batch)",
    ),
    "ops": Group(
        ("test_bench_ops.py",),
        "fused conv ops: fastcodec's fused op vs eager PyTorch vs torch.compile, ms, GB/s, "
        "TFLOP/s, x floor, peak device memory (GPU: benches/gpu_ops.sh)",
    ),
    "codec": Group(
        ("test_bench_codec.py",),
        "end-to-end encode/decode of whole images: fastcodec vs Pillow JPEG/WebP/AVIF and the "
        "bmshj2018-factorized architecture, MP/s, images/s, bpp, PSNR, peak host/device memory; "
        "refined encodes (--refine) against the plain one",
    ),
}

#: Groups that are announced but not there yet: ``--group`` accepts them and says why not.
PLANNED_GROUPS: dict = {}

#: Default history plot: fastcodec's one-thread coder throughput.
HISTORY_BENCHES = ("test_fastcodec_encode[1thread]", "test_fastcodec_decode[1thread]")
HISTORY_METRIC = "Msym_per_s"


# --------------------------------------------------------------------------------------------
# command line


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds the options of ``fastcodec bench`` to ``parser`` (the subcommand's parser)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = "Run the benchmark suite (benches/), store, compare and plot its results."
    def wrap(text: str, indent: str = "") -> str:
        return textwrap.fill(text, 94, initial_indent=indent,
                             subsequent_indent=indent + " " * 9 if indent else "")

    groups = "\n".join(wrap(f"{k:<6} {g.what}", "  ") for k, g in GROUPS.items())
    planned = "\n".join(wrap(f"{k:<6} (not yet) {v}", "  ") for k, v in PLANNED_GROUPS.items())
    parser.epilog = (
        f"groups:\n{groups}\n{planned}\n\n"
        + wrap("compare rule: " + COMPARE_RULE.format(factor=SPREAD_FACTOR, floor=MIN_SPREAD)
               + " (--spread-factor, --min-spread).") + "\n\n"
        "examples:\n"
        "  fastcodec bench --group coder                  "
        "# full coder run, stored in benches/results/\n"
        "  fastcodec bench --quick                        # CI-sized smoke run of every group\n"
        "  fastcodec bench --group coder --compare benches/results/coder-cpu-2026-11-25.json\n"
        "  fastcodec bench --from latest --plot           "
        "# no run: table + plots of the newest file\n"
        "No timing is asserted: the exit status is pytest's "
        "(wrong output fails, slowness does not)."
    )
    parser.add_argument("--group", default="all", choices=[*GROUPS, *PLANNED_GROUPS, "all"],
                        help="benchmark group to run (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="CI-sized workloads and few rounds (a smoke run; numbers are rough)")
    parser.add_argument("--compare", metavar="OLD.json",
                        help="print new/old ratios against an earlier results file and flag "
                             "changes beyond the run-to-run spread (rule below)")
    parser.add_argument("--plot", action="store_true",
                        help="write PNGs: coder throughput vs batch size, and the history of "
                             "--history-metric across the stored results (needs matplotlib: "
                             "pip install 'fastcodec[bench]')")
    parser.add_argument("--from", dest="from_file", metavar="FILE|latest",
                        help="do not run: use this stored results file (or the newest one in the "
                             "results folder) for the table, --compare and --plot")
    parser.add_argument("--benches", metavar="DIR",
                        help="the benches/ folder (default: the checkout of an editable install, "
                             "else ./benches or one above the current directory)")
    parser.add_argument("--results-dir", metavar="DIR",
                        help="where results files are written and the history is read "
                             "(default: <benches>/results)")
    parser.add_argument("--plot-dir", metavar="DIR",
                        help="where --plot writes (default: <results-dir>/plots)")
    parser.add_argument("-k", dest="keyword", metavar="EXPR",
                        help="further pytest -k selection inside the group")
    parser.add_argument("--pytest-args", default="", metavar="ARGS",
                        help="extra pytest arguments, one shell-quoted string "
                             "(e.g. \"--coder-rounds 20\" or \"--ops-dtypes bf16\")")
    parser.add_argument("--note", default=None,
                        help="free text stored in the results (e.g. what else the machine ran)")
    parser.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                        help="first wait up to SECONDS for other processes to use < 10%% of the "
                             "CPU (over 3 s); runs anyway after that (default: no wait)")
    parser.add_argument("--history-metric", default=HISTORY_METRIC, metavar="KEY",
                        help="extra_info key the history plot shows (default: %(default)s; "
                             "e.g. ns_per_symbol, MB_per_s, GB_per_s, ms)")
    parser.add_argument("--history-bench", action="append", metavar="NAME",
                        help="benchmark whose history is plotted (name or part of it; repeat; "
                             "default: " + ", ".join(HISTORY_BENCHES) + ")")
    parser.add_argument("--spread-factor", type=float, default=SPREAD_FACTOR,
                        help="--compare flags changes beyond this many spreads "
                             "(default: %(default)s)")
    parser.add_argument("--min-spread", type=float, default=MIN_SPREAD,
                        help="spread floor of --compare, relative (default: %(default)s)")
    parser.set_defaults(run=main)
    return parser


def build_parser() -> argparse.ArgumentParser:
    return configure_parser(argparse.ArgumentParser(prog="fastcodec bench"))


def main(argv=None) -> int:
    """Entry point: ``argv`` is a list of arguments (after ``bench``) or a parsed namespace."""
    if isinstance(argv, argparse.Namespace):
        args = argv
    else:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        return _main(args)
    except BenchError as exc:
        print(f"fastcodec bench: error: {exc}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    if args.group in PLANNED_GROUPS:
        raise BenchError(f"group {args.group!r} is not there yet: {PLANNED_GROUPS[args.group]}")
    # What the options need is checked before the (long) run, not after it.
    old_data = load_results(Path(args.compare)) if args.compare else None
    plt = None
    if args.plot:
        try:
            plt = import_pyplot()
        except ImportError as exc:
            raise BenchError(f"--plot needs matplotlib ({exc}): pip install 'fastcodec[bench]' "
                             "(or pip install matplotlib)") from None
    if args.from_file:
        results_dir = Path(args.results_dir) if args.results_dir else _default_results_dir(args)
        path = latest_results(results_dir) if args.from_file == "latest" else Path(args.from_file)
        data = load_results(path)
        rc = 0
        print(f"results: {path}")
    else:
        benches = find_benches(args.benches)
        results_dir = Path(args.results_dir) if args.results_dir else benches / "results"
        path, data, rc = run_suite(args, benches, results_dir)
        if data is None:
            return rc or 1
    print()
    print("\n".join(table_lines(data)))
    if args.compare:
        old_path = Path(args.compare)
        rows = compare(old_data, data, args.spread_factor, args.min_spread)
        machines = machine_differences(old_data, data)
        print()
        print("\n".join(compare_lines(rows, old_path, path, args.spread_factor, args.min_spread,
                                     machines=machines)))
        if not args.from_file:  # a fresh run keeps what it was compared with
            data["comparison"] = {
                "against": str(old_path),
                "rule": COMPARE_RULE.format(factor=args.spread_factor, floor=args.min_spread),
                "machine_differences": machines,
                "flagged": {r.name: round(r.ratio, 4) for r in rows if r.flag},
                "ratios": {r.name: round(r.ratio, 4) for r in rows
                           if r.ratio is not None and r.comparable},
                "not_comparable": {r.name: r.note for r in rows if not r.comparable},
            }
            write_results(path, data)
    if args.plot:
        plot_dir = Path(args.plot_dir) if args.plot_dir else results_dir / "plots"
        written = make_plots(path, data, results_dir, plot_dir, args.history_metric,
                             tuple(args.history_bench or HISTORY_BENCHES), plt=plt)
        for p in written:
            print(f"plot: {p}")
    return rc


def _default_results_dir(args) -> Path:
    try:
        return find_benches(args.benches) / "results"
    except BenchError as exc:
        raise BenchError(f"{exc}; or give --results-dir") from None


# --------------------------------------------------------------------------------------------
# locating the suite


def _is_benches(path: Path) -> bool:
    return (path / "conftest.py").is_file() and (path / "test_bench_coder.py").is_file()


def find_benches(explicit: Optional[str] = None) -> Path:
    """The benches/ folder: ``explicit``, else next to the imported fastcodec package (editable
    install / source checkout), else the current directory, ``./benches`` or one above it."""
    if explicit:
        path = Path(explicit).expanduser().resolve()
        if not _is_benches(path):
            raise BenchError(f"{path} is not fastcodec's benches/ folder (no conftest.py and "
                             "test_bench_coder.py in it)")
        return path
    candidates = []
    spec = importlib.util.find_spec("fastcodec")
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).resolve().parent.parent / "benches")
    cwd = Path.cwd().resolve()
    candidates.append(cwd)
    candidates.extend(p / "benches" for p in (cwd, *cwd.parents))
    for path in candidates:
        if _is_benches(path):
            return path
    raise BenchError(
        "cannot find the benchmark suite (benches/): it is part of the source checkout, not of "
        "the installed package. Run from a checkout (git clone ...; pip install -e .), "
        "or pass --benches DIR"
    )


# --------------------------------------------------------------------------------------------
# running


def results_path(results_dir: Path, group: str, kind: str, now: _dt.datetime, short: str,
                 quick: bool) -> Path:
    stem = f"{group}-{kind}-{now:%Y-%m-%d}-{short}" + ("-quick" if quick else "")
    path = results_dir / f"{stem}.json"
    n = 2
    while path.exists():
        path = results_dir / f"{stem}-{n}.json"
        n += 1
    return path


def pytest_command(args, benches: Path, json_path: Path) -> list:
    files = (
        [str(benches)] if args.group == "all"
        else [str(benches / f) for f in GROUPS[args.group].files]
    )
    cmd = [sys.executable, "-m", "pytest", *files, "-q", "-p", "no:cacheprovider",
           "--benchmark-json", str(json_path),
           "--benchmark-columns", "min,median,iqr,rounds"]
    if args.quick:
        cmd.append("--quick")
    if args.keyword:
        cmd += ["-k", args.keyword]
    cmd += shlex.split(args.pytest_args or "")
    return cmd


def run_suite(args, benches: Path, results_dir: Path):
    """Runs pytest; returns ``(results path, results dict or None, pytest exit status)``."""
    results_dir.mkdir(parents=True, exist_ok=True)
    repo = benches.parent
    idle = wait_idle(args.wait_idle) if args.wait_idle > 0 else None
    now = _dt.datetime.now().astimezone()
    command = shlex.join(["fastcodec", "bench", *_argv_for_record()])
    print("[bench] describing the machine", flush=True)
    machine = describe_machine(repo, command, "", now)
    git = machine["git"]
    path = results_path(results_dir, args.group, machine["kind"], now, git["short"], args.quick)
    cmd = pytest_command(args, benches, path)
    machine["pytest_command"] = shlex.join(cmd)
    print(f"[bench] {machine['cpu']}, {machine['cores']} cores"
          + (f", {machine['gpu']} (driver {machine['gpu_driver']})" if machine["gpu"] else "")
          + f"; git {git['short']}{' (modified)' if git['dirty'] else ''}", flush=True)
    print(f"[bench] {shlex.join(cmd)}", flush=True)

    load_before = loadavg()
    busy0, t0 = cpu_busy_seconds(), time.monotonic()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with tempfile.TemporaryDirectory(prefix="fastcodec-bench-") as tmp:
        # Outside the checkout: `python -m` puts the working directory first on sys.path, and the
        # installed package (with its compiled modules) must win over the source tree.
        proc = subprocess.Popen(cmd, cwd=tmp, env=env)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait()
            raise
        proc.returncode = rc = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    busy1 = cpu_busy_seconds()
    own = usage.ru_utime + usage.ru_stime
    others = None
    if busy0 is not None and busy1 is not None and wall > 0.25:
        others = round(max(0.0, (busy1 - busy0) - own) / wall, 3)
    # ru_maxrss: kilobytes on Linux, bytes on macOS
    peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    if not path.is_file():
        print(f"fastcodec bench: pytest exited with status {rc} and wrote no results "
              f"({path} missing)", file=sys.stderr)
        return path, None, rc
    data = load_results(path)
    data["machine"] = machine
    data["run"] = {
        "group": args.group,
        "quick": bool(args.quick),
        "pytest_exit_status": rc,
        "seconds": round(wall, 1),
        "load_before": load_before,
        "load_after": loadavg(),
        "other_load_cores": others,
        "busy_before_start": None if idle is None else round(idle, 3),
        "peak_host_rss_bytes": peak,
        "note": args.note,
    }
    write_results(path, data)
    print(f"[bench] results: {path}")
    return path, data, rc


def _argv_for_record() -> list:
    argv = sys.argv[1:]
    return argv[1:] if argv and argv[0] == "bench" else argv
