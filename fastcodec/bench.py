"""``fastcodec bench``: run the benchmark suite, store the results with the machine, compare and plot.

The suite itself is ``benches/`` of a source checkout (pytest + pytest-benchmark; see
``benches/README.md``): wheels do not ship it, so this command needs a checkout -- the one an
editable install points at, the current directory (or one above it), or ``--benches DIR``.

What a run does:

1. runs ``python -m pytest <benches files of the group> --benchmark-json <file>`` in a
   subprocess whose working directory is a temporary folder, so the *installed* fastcodec (with
   its compiled modules) is imported, not the source tree (``python -m`` puts the working
   directory first on ``sys.path``);
2. adds to that pytest-benchmark JSON a ``"machine"`` block (CPU model, cores, RAM, GPU name and
   driver, library versions, git commit and whether the working tree was modified, date, command)
   and a ``"run"`` block (group, quick, exit status, duration, load from other processes, peak
   host memory of the benchmark process), and stores it as
   ``benches/results/<group>-<host>-<date>-<commit>[-quick].json`` (``<host>``: ``cpu``, or
   ``gpu-<model>`` when a GPU is visible);
3. prints a compact table per benchmark group (median, spread, throughput in the group's units,
   speed-ups over the anchors measured in the same run; n/a with the reason for an anchor the
   run skipped, from the file's ``skipped_anchors``);
4. with ``--compare OLD.json``: ratio columns new/old per benchmark and a flag where the change
   exceeds the measured spread (rule: :data:`COMPARE_RULE`); a warning when the machines differ,
   and rows of a different model / quality / dtype are "not comparable", never flagged;
5. with ``--plot``: PNGs in ``benches/results/plots/`` -- fastcodec's coder throughput vs batch
   size (from this run's ``coder-batch`` benchmarks) and the history of a metric across all the
   stored results files (one line per benchmark, workload, model and machine).

``--compare``'s file is read, and matplotlib imported for ``--plot``, before the suite runs.

No timing is ever asserted: the exit status is pytest's (a benchmark fails only when its output is
wrong), so CI can run ``fastcodec bench --quick`` as a smoke test.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

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

#: Run-to-run spread below which a change is never flagged (timer and frequency noise).
MIN_SPREAD = 0.02
#: A change is flagged when it exceeds this many spreads.
SPREAD_FACTOR = 2.0

COMPARE_RULE = (
    "ratio = new/old median time of the same benchmark (per symbol when the workload differs); "
    "spread of a file = IQR / median of that benchmark's rounds (stddev / median when the IQR is "
    "missing); flagged when |ratio - 1| > {factor:g} x max(spread old, spread new, {floor:g}), "
    "i.e. outside the round-to-round spread measured in both runs"
)

#: Above this many cores' worth of CPU used by other processes while a benchmark was timed,
#: its time is marked unreliable (compare notes, hollow points; benches/conftest.py warns at the
#: same level).
DISTURBED_CORES = 0.15

#: Default history plot: fastcodec's one-thread coder throughput.
HISTORY_BENCHES = ("test_fastcodec_encode[1thread]", "test_fastcodec_decode[1thread]")
HISTORY_METRIC = "Msym_per_s"

#: Columns of the table, in order: extra_info key -> (header, format, scale).
UNITS = {
    "Msym_per_s": ("Msym/s", ".1f", 1.0),
    "ns_per_symbol": ("ns/sym", ".2f", 1.0),
    "MB_per_s": ("MB/s", ".1f", 1.0),
    "MP_per_s": ("MP/s", ".1f", 1.0),
    "images_per_s": ("img/s", ".0f", 1.0),
    "GB_per_s": ("GB/s", ".3g", 1.0),
    "TFLOP_per_s": ("TFLOP/s", ".3g", 1.0),
    "x_floor": ("x floor", ".2f", 1.0),
    "bits_per_symbol": ("bits/sym", ".4f", 1.0),
    "bpp": ("bpp", ".4f", 1.0),
    "peak_host_bytes": ("host MiB", ".1f", 2.0**-20),
    "peak_bytes": ("dev MiB", ".1f", 2.0**-20),
}

#: Axis labels of metrics the plots know (others are shown by their key).
METRIC_LABELS = {
    "Msym_per_s": "throughput, Msym/s (median round)",
    "ns_per_symbol": "time, ns/symbol (median round)",
    "MB_per_s": "compressed bytes, MB/s",
    "MP_per_s": "throughput, MP/s",
    "images_per_s": "images/s",
    "GB_per_s": "GB/s (min bytes / time)",
    "TFLOP_per_s": "TFLOP/s",
    "ms": "time, ms (median)",
    "seconds": "time, s (median)",
}


class BenchError(RuntimeError):
    """A usage problem reported as one line (exit status 2)."""


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
        "  fastcodec bench --group coder                  # full coder run, stored in benches/results/\n"
        "  fastcodec bench --quick                        # CI-sized smoke run of every group\n"
        "  fastcodec bench --group coder --compare benches/results/coder-cpu-2026-11-25.json\n"
        "  fastcodec bench --from latest --plot           # no run: table + plots of the newest file\n"
        "No timing is asserted: the exit status is pytest's (wrong output fails, slowness does not)."
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
                        help="--compare flags changes beyond this many spreads (default: %(default)s)")
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
            plt = _pyplot()
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
# machine


def _read(path: str) -> Optional[str]:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None


def _cmd(args: list, cwd=None, timeout: float = 20) -> Optional[str]:
    try:
        run = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return run.stdout.rstrip() if run.returncode == 0 else None  # (porcelain lines start with " ")


def cpu_model() -> str:
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.lower().startswith(("model name", "hardware", "cpu model")):
            return line.split(":", 1)[1].strip()
    if sys.platform == "darwin":
        name = _cmd(["sysctl", "-n", "machdep.cpu.brand_string"])
        if name:
            return name
    return platform.processor() or platform.machine()


def ram_gib() -> Optional[float]:
    text = _read("/proc/meminfo") or ""
    m = re.search(r"^MemTotal:\s+(\d+) kB", text, re.M)
    if m:
        return round(int(m.group(1)) / 2**20, 1)
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _version(dist: str) -> Optional[str]:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def gpus() -> tuple:
    """``([{"name", "driver", "memory"}], cuda_seen_by_torch)``: nvidia-smi when present, else
    what torch sees (no driver version then)."""
    out = _cmd(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                "--format=csv,noheader"])
    found = []
    if out:
        for line in out.splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) >= 3:
                found.append({"name": parts[0], "driver": parts[1], "memory": parts[2]})
    torch_cuda = None
    if _version("torch"):
        try:
            import torch

            torch_cuda = {"available": bool(torch.cuda.is_available()),
                          "cuda": torch.version.cuda}
            if torch_cuda["available"]:
                torch_cuda["devices"] = [torch.cuda.get_device_name(i)
                                         for i in range(torch.cuda.device_count())]
                if not found:
                    found = [{"name": n, "driver": "unknown (no nvidia-smi)", "memory": None}
                             for n in torch_cuda["devices"]]
        except Exception as exc:  # noqa: BLE001 - a broken torch must not stop the report
            torch_cuda = {"error": repr(exc)}
    return found, torch_cuda


def host_kind(gpu_list: list) -> str:
    """``cpu``, or ``gpu-<model>`` (``NVIDIA H100 80GB HBM3`` -> ``gpu-h100-80gb``)."""
    if not gpu_list:
        return "cpu"
    name = re.sub(r"\b(nvidia|geforce|tesla|amd|radeon)\b", " ", gpu_list[0]["name"].lower())
    tokens = re.findall(r"[a-z0-9]+", name)[:2]
    return "gpu-" + ("-".join(tokens) or "unknown")


def git_info(repo: Path) -> dict:
    head = _cmd(["git", "-C", str(repo), "rev-parse", "HEAD"])
    if not head:
        return {"commit": None, "short": "nogit", "dirty": None}
    status = _cmd(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=normal", "--",
                   ".", ":(exclude)benches/results"]) or ""
    changed = [line[3:] for line in status.splitlines() if line.strip()]
    info = {"commit": head, "short": head[:7], "dirty": bool(changed)}
    if changed:
        info["modified"] = changed[:30] + ([f"... {len(changed) - 30} more"] if len(changed) > 30 else [])
    branch = _cmd(["git", "-C", str(repo), "rev-parse", "--abbrev-ref", "HEAD"])
    if branch:
        info["branch"] = branch
    return info


def native_module() -> Optional[dict]:
    """Where the compiled range coder that the benchmarks import lives, and a hash of it."""
    try:
        spec = importlib.util.find_spec("fastcodec._rangecoder")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin or not os.path.isfile(spec.origin):
        return None
    digest = hashlib.sha256(Path(spec.origin).read_bytes()).hexdigest()[:16]
    mtime = _dt.datetime.fromtimestamp(os.path.getmtime(spec.origin)).astimezone()
    return {"path": spec.origin, "sha256_16": digest, "built": mtime.isoformat(timespec="seconds")}


def describe_machine(repo: Path, command: str, pytest_command: str, now: _dt.datetime) -> dict:
    gpu_list, torch_cuda = gpus()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    versions = {"python": platform.python_version()}
    for dist in ("fastcodec", "numpy", "torch", "triton", "pytest", "pytest-benchmark",
                 "constriction", "compressai", "Pillow"):
        versions[dist] = _version(dist)
    return {
        "date": now.isoformat(timespec="seconds"),
        "host": platform.node(),
        "kind": host_kind(gpu_list),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "ram_gib": ram_gib(),
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "gpus": gpu_list,
        "gpu": gpu_list[0]["name"] if gpu_list else None,
        "gpu_driver": gpu_list[0]["driver"] if gpu_list else None,
        "torch_cuda": torch_cuda,
        "versions": versions,
        "native_module": native_module(),
        "git": git_info(repo),
        "command": command,
        "pytest_command": pytest_command,
    }


# --------------------------------------------------------------------------------------------
# load


def _cpu_busy_seconds() -> Optional[float]:
    """Busy CPU seconds of the whole machine so far (all but idle and iowait)."""
    text = _read("/proc/stat")
    if not text:
        return None
    try:
        fields = [int(v) for v in text.splitlines()[0].split()[1:9]]
        return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
    except (ValueError, IndexError, OSError):
        return None


def _loadavg() -> Optional[list]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def wait_idle(limit_s: float, max_busy: float = 0.10) -> Optional[float]:
    """Waits up to ``limit_s`` for the machine to be < ``max_busy`` busy over 3 s; returns the
    last busy fraction measured (None where /proc/stat is missing)."""
    deadline = time.monotonic() + limit_s
    cores = os.cpu_count() or 1
    while True:
        a, t0 = _cpu_busy_seconds(), time.monotonic()
        if a is None:
            return None
        time.sleep(3)
        busy = (_cpu_busy_seconds() - a) / (time.monotonic() - t0) / cores
        if busy < max_busy:
            return busy
        if time.monotonic() > deadline:
            print(f"[bench] CPU still {busy:.0%} busy after {limit_s:.0f} s; running anyway",
                  flush=True)
            return busy
        print(f"[bench] waiting for an idle CPU ({busy:.0%} busy)", flush=True)


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

    load_before = _loadavg()
    busy0, t0 = _cpu_busy_seconds(), time.monotonic()
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
    busy1 = _cpu_busy_seconds()
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
        "load_after": _loadavg(),
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


# --------------------------------------------------------------------------------------------
# results files


def load_results(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BenchError(f"no such results file: {path}") from None
    except (OSError, ValueError) as exc:
        raise BenchError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise BenchError(f"{path} is not a pytest-benchmark results file (no 'benchmarks')")
    return data


def write_results(path: Path, data: dict) -> None:
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(data, indent=4) + "\n")
    os.replace(tmp, path)


def result_date(data: dict) -> str:
    """ISO date of a results file: the machine block's, else pytest-benchmark's (UTC)."""
    machine = data.get("machine") or {}
    if machine.get("date"):
        return machine["date"]
    stamp = data.get("datetime") or ""
    try:
        return _dt.datetime.fromisoformat(stamp).astimezone().isoformat(timespec="seconds")
    except ValueError:
        return stamp


def result_commit(data: dict) -> str:
    git = (data.get("machine") or {}).get("git") or {}
    if git.get("commit"):
        return git["commit"][:7] + ("+" if git.get("dirty") else "")
    info = data.get("commit_info") or {}
    cid = info.get("id") or ""
    if not cid:
        return "?"
    # pytest-benchmark writes "unversioned" outside a git checkout: a word, not a hash to cut
    short = cid[:7] if re.fullmatch(r"[0-9a-f]{7,40}", cid) else cid
    return short + ("+" if info.get("dirty") else "")


def stored_results(results_dir: Path) -> list:
    """``[(date, path, data)]`` of every results JSON in ``results_dir``, oldest first."""
    found = []
    for path in sorted(Path(results_dir).glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("benchmarks"), list):
            found.append((result_date(data), path, data))
    found.sort(key=lambda item: (_sort_key(item[0]), item[1].name))
    return found


def _sort_key(date: str) -> float:
    try:
        return _dt.datetime.fromisoformat(date).timestamp()
    except ValueError:
        return 0.0


def latest_results(results_dir: Path) -> Path:
    found = stored_results(results_dir)
    if not found:
        raise BenchError(f"no results files in {results_dir}")
    return found[-1][1]


# --------------------------------------------------------------------------------------------
# table


def bench_time(bench: dict) -> Optional[float]:
    """Median seconds per call: extra_info's (CUDA-event median for GPU ops), else pytest's."""
    info = bench.get("extra_info") or {}
    if isinstance(info.get("seconds"), (int, float)):
        return float(info["seconds"])
    stats = bench.get("stats") or {}
    return float(stats["median"]) if stats.get("median") else None


def rel_spread(bench: dict) -> Optional[float]:
    """IQR / median of the rounds (stddev / median without an IQR)."""
    stats = bench.get("stats") or {}
    median = stats.get("median")
    if not median:
        return None
    for key in ("iqr", "stddev"):
        value = stats.get(key)
        if isinstance(value, (int, float)) and value > 0 and stats.get("rounds", 0) >= 2:
            return float(value) / float(median)
    return 0.0


def _fmt_time(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.4g} {unit}"
    return f"{seconds * 1e9:.4g} ns"


def _short_name(name: str) -> str:
    return name[5:] if name.startswith("test_") else name


def _group_of(bench: dict) -> str:
    return bench.get("group") or "(none)"


def skipped_anchors(data: dict) -> list:
    """The anchors the run skipped (``skipped_anchors``, written by benches/conftest.py):
    ``[{"group", "anchor", "ratio", "reason", "rows"}]``; ``rows`` (the benchmarks that would
    have had the ``ratio`` column) defaults to the group's fastcodec benchmarks."""
    out = []
    for s in data.get("skipped_anchors") or []:
        if not isinstance(s, dict) or not s.get("anchor"):
            continue
        group = s.get("group") or "(none)"
        ratio = s.get("ratio") or f"speedup_vs_{s['anchor']}"
        rows = s.get("rows")
        if not isinstance(rows, list):
            rows = [b["name"] for b in data["benchmarks"]
                    if _group_of(b) == group and "fastcodec" in b["name"]]
        out.append({"group": group, "anchor": s["anchor"], "ratio": ratio,
                    "reason": s.get("reason") or "?", "rows": rows})
    return out


def table_lines(data: dict) -> list:
    """A compact table per benchmark group."""
    machine = data.get("machine") or {}
    run = data.get("run") or {}
    lines = []
    if machine:
        git = machine.get("git") or {}
        head = (f"{machine.get('date')}  {machine.get('cpu')}, {machine.get('cores')} cores, "
                f"{machine.get('ram_gib')} GiB")
        if machine.get("gpu"):
            head += f"; {machine['gpu']} (driver {machine.get('gpu_driver')})"
        v = machine.get("versions") or {}
        head += (f"; python {v.get('python')}, torch {v.get('torch')}, numpy {v.get('numpy')}"
                 f"; git {git.get('short')}{' (modified)' if git.get('dirty') else ''}")
        lines.append(head)
    else:
        lines.append(f"{result_date(data)}  (no machine block: stored before fastcodec bench); "
                     f"git {result_commit(data)}")
    if run:
        load = run.get("other_load_cores")
        bits = [f"group {run.get('group')}", "quick" if run.get("quick") else "full",
                f"{run.get('seconds')} s", f"pytest exit {run.get('pytest_exit_status')}"]
        if load is not None:
            bits.append(f"other processes used {load:.2f} cores on average")
        if run.get("load_before"):
            bits.append(f"loadavg before {run['load_before'][0]}")
        if run.get("peak_host_rss_bytes"):
            bits.append(f"peak host RSS {run['peak_host_rss_bytes'] / 2**20:.0f} MiB")
        lines.append("; ".join(bits))
        if run.get("note"):
            lines.append(f"note: {run['note']}")
    by_group: dict = {}
    for bench in data["benchmarks"]:
        by_group.setdefault(_group_of(bench), []).append(bench)
    skipped = skipped_anchors(data)
    for group, benches in by_group.items():
        infos = [b.get("extra_info") or {} for b in benches]
        units = [k for k in UNITS if any(isinstance(i.get(k), (int, float)) for i in infos)]
        missing = {skip["ratio"]: skip for skip in skipped if skip["group"] == group}
        ratios = sorted({k for i in infos for k in i if k.startswith("speedup_vs_")}
                        | set(missing))
        width = max(24, *(len(_short_name(b["name"])) + 2 for b in benches))
        header = f"{'benchmark':<{width}}{'median':>11}{'IQR':>7}{'rounds':>7}"
        header += "".join(f"{UNITS[k][0]:>10}" for k in units)
        header += "".join(f"{'vs ' + k[len('speedup_vs_'):]:>{max(10, len(k) - 7)}}" for k in ratios)
        lines += ["", f"group {group}:", header, "-" * len(header)]
        for bench, info in zip(benches, infos):
            spread = rel_spread(bench)
            row = (f"{_short_name(bench['name']):<{width}}{_fmt_time(bench_time(bench)):>11}"
                   f"{'-' if spread is None else f'{spread:.1%}':>7}"
                   f"{(bench.get('stats') or {}).get('rounds', '-'):>7}")
            for k in units:
                value = info.get(k)
                _, spec, scale = UNITS[k]
                row += f"{format(value * scale, spec) if isinstance(value, (int, float)) else '-':>10}"
            for k in ratios:
                value = info.get(k)
                if isinstance(value, (int, float)):
                    cell = f"{value:.2f}x"
                else:
                    cell = "n/a" if k in missing and bench["name"] in missing[k]["rows"] else "-"
                row += f"{cell:>{max(10, len(k) - 7)}}"
            lines.append(row)
        for k, skip in missing.items():
            lines.append(f"vs {k[len('speedup_vs_'):]}: n/a, {skip['anchor']} skipped: "
                         f"{skip['reason']}")
    for skip in skipped:
        if skip["group"] not in by_group:
            lines.append(f"{skip['anchor']} (group {skip['group']}) skipped: {skip['reason']}")
    lines.append("")
    lines.append("median: median round (CUDA-event median for GPU ops); IQR: interquartile range "
                 "of the rounds / median; vs X: speed-up over X in the same run (> 1: faster)")
    return lines


# --------------------------------------------------------------------------------------------
# compare


#: ``extra_info`` keys that say *what* a benchmark ran beyond its name (the codec's model, its
#: quality, the ops' dtype): a row whose value differs between the files is not comparable.
IDENTITY_KEYS = ("model", "quality", "dtype")


def machine_identity(data: dict) -> dict:
    """``{"CPU", "cores", "GPU"}`` of a results file: its ``machine`` block, else
    pytest-benchmark's ``machine_info`` (which has no GPU: ``None`` = not recorded)."""
    machine = data.get("machine") or {}
    cpu = (data.get("machine_info") or {}).get("cpu") or {}
    return {
        "CPU": machine.get("cpu") or cpu.get("brand_raw"),
        "cores": machine.get("cores") or cpu.get("count"),
        "GPU": (machine.get("gpu") or "none") if machine else None,
    }


def machine_differences(old: dict, new: dict) -> list:
    """``["CPU AMD EPYC vs Intel Xeon", ...]`` (old vs new): what differs between the machines
    of two results files, among what both recorded."""
    a, b = machine_identity(old), machine_identity(new)
    return [f"{key} {a[key]} vs {b[key]}" for key in a
            if a[key] is not None and b[key] is not None and a[key] != b[key]]


@dataclass
class CompareRow:
    name: str
    group: str
    old: Optional[float] = None  # seconds (or seconds per symbol when per_symbol)
    new: Optional[float] = None
    ratio: Optional[float] = None  # new/old time
    metric: Optional[str] = None  # throughput key whose new/old ratio is shown
    metric_ratio: Optional[float] = None
    spread_old: Optional[float] = None
    spread_new: Optional[float] = None
    threshold: Optional[float] = None
    flag: str = ""
    note: str = ""
    #: False when the two rows ran different things (IDENTITY_KEYS): never flagged then.
    comparable: bool = True


def _key(bench: dict) -> tuple:
    return _group_of(bench), bench["name"]


def compare(old: dict, new: dict, factor: float = SPREAD_FACTOR,
            floor: float = MIN_SPREAD) -> list:
    """One :class:`CompareRow` per benchmark of either file (see :data:`COMPARE_RULE`)."""
    olds = {_key(b): b for b in old["benchmarks"]}
    news = {_key(b): b for b in new["benchmarks"]}
    rows = []
    for key in [*news, *(k for k in olds if k not in news)]:
        row = CompareRow(name=key[1], group=key[0])
        rows.append(row)
        b_old, b_new = olds.get(key), news.get(key)
        if b_old is None or b_new is None:
            row.note = "only in the new file" if b_old is None else "only in the old file"
            continue
        i_old, i_new = b_old.get("extra_info") or {}, b_new.get("extra_info") or {}
        differs = [f"{k} {i_old[k]} vs {i_new[k]}" for k in IDENTITY_KEYS
                   if k in i_old and k in i_new and i_old[k] != i_new[k]]
        if differs:
            row.comparable = False
            row.note = f"not comparable ({', '.join(differs)})"
        t_old, t_new = bench_time(b_old), bench_time(b_new)
        if not t_old or not t_new:
            row.note = "; ".join(filter(None, [row.note, "no time"]))
            continue
        if i_old.get("workload") != i_new.get("workload"):
            if i_old.get("symbols") and i_new.get("symbols"):
                t_old, t_new = t_old / i_old["symbols"], t_new / i_new["symbols"]
                row.note = "; ".join(filter(None, [
                    row.note,
                    f"workload {i_old.get('workload')} -> {i_new.get('workload')}: per symbol"]))
            else:
                workload = f"workload {i_old.get('workload')} -> {i_new.get('workload')}"
                row.note = (f"{row.note}; {workload}" if differs
                            else f"not comparable: {workload}")
                continue
        row.old, row.new, row.ratio = t_old, t_new, t_new / t_old
        for metric in ("Msym_per_s", "GB_per_s", "MP_per_s", "images_per_s"):
            if isinstance(i_old.get(metric), (int, float)) and isinstance(i_new.get(metric), (int, float)) \
                    and i_old[metric] > 0:
                row.metric, row.metric_ratio = metric, i_new[metric] / i_old[metric]
                break
        busy = [f"{which} {load:.2f}" for which, info in (("old", i_old), ("new", i_new))
                if isinstance(load := info.get("other_load_cores"), (int, float))
                and load > DISTURBED_CORES]
        if busy:
            row.note = "; ".join(filter(None, [row.note, "other load, cores: " + ", ".join(busy)]))
        row.spread_old, row.spread_new = rel_spread(b_old), rel_spread(b_new)
        spread = max(row.spread_old or 0.0, row.spread_new or 0.0, floor)
        row.threshold = factor * spread
        if row.comparable and abs(row.ratio - 1.0) > row.threshold:
            row.flag = "SLOWER" if row.ratio > 1 else "FASTER"
    return rows


def compare_lines(rows: list, old_path, new_path, factor: float = SPREAD_FACTOR,
                  floor: float = MIN_SPREAD, machines: Optional[list] = None) -> list:
    """The comparison as text; ``machines``: :func:`machine_differences` of the two files (a
    warning heads the table when there are any)."""
    width = max([24] + [len(_short_name(r.name)) + 2 for r in rows])
    header = (f"{'benchmark':<{width}}{'old':>11}{'new':>11}{'time new/old':>14}"
              f"{'rate new/old':>14}{'spread old/new':>16}{'limit':>8}  flag")
    lines = [f"compare: new {new_path}", f"     vs old {old_path}"]
    if machines:
        lines.append(f"WARNING: different machines, old vs new: {'; '.join(machines)}: the "
                     "ratios and flags below mix the machines' speed with the code's")
    lines += [header, "-" * len(header)]
    alone: dict = {}
    for r in rows:
        if r.ratio is None and r.note.startswith("only in"):
            alone.setdefault(r.note, []).append(_short_name(r.name))
            continue
        if r.ratio is None:
            lines.append(f"{_short_name(r.name):<{width}}  ({r.note})")
            continue
        rate = f"{r.metric_ratio:.3f}" if r.metric_ratio is not None else "-"
        spreads = f"{r.spread_old or 0:.1%}/{r.spread_new or 0:.1%}"
        per_symbol = "per symbol" in r.note
        flag, note = r.flag, r.note
        if not r.comparable:  # "not comparable (model X vs Y)" in the flag column
            flag, _, note = r.note.partition("; ")
        line = (f"{_short_name(r.name):<{width}}{_fmt_time(None if per_symbol else r.old):>11}"
                f"{_fmt_time(None if per_symbol else r.new):>11}{r.ratio:>14.3f}{rate:>14}"
                f"{spreads:>16}{f'±{r.threshold:.1%}':>8}  {flag}")
        if note:
            line += f"  ({note})"
        lines.append(line.rstrip())
    for note, names in alone.items():
        lines.append(f"{len(names)} {note}: " + ", ".join(names))
    flagged = [r for r in rows if r.flag]
    compared = [r for r in rows if r.ratio is not None and r.comparable]
    apart = [r for r in rows if not r.comparable]
    lines.append("")
    lines.append(f"{len(compared)} compared, {len(flagged)} flagged"
                 + (": " + ", ".join(f"{_short_name(r.name)} {r.flag.lower()} "
                                     f"{r.ratio:.2f}x time" for r in flagged) if flagged else ""))
    if apart:
        lines.append(f"{len(apart)} not comparable (different {'/'.join(IDENTITY_KEYS)}; "
                     "not flagged): " + ", ".join(_short_name(r.name) for r in apart))
    if machines:
        lines.append(f"machines differ, old vs new: {'; '.join(machines)} (a flag may be the "
                     "machine, not the code)")
    lines.append("rule: " + COMPARE_RULE.format(factor=factor, floor=floor))
    lines.append("rate new/old: Msym/s (or GB/s) ratio, > 1 faster; limit: the flag threshold on "
                 "|time new/old - 1|; other load: cores' worth of CPU other processes used while "
                 f"that benchmark was timed (> {DISTURBED_CORES}: the time is unreliable)")
    return lines


# --------------------------------------------------------------------------------------------
# plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def make_plots(path: Path, data: dict, results_dir: Path, plot_dir: Path, metric: str,
               history_benches: tuple, plt=None) -> list:
    """Writes the batch-size plot (from ``data``, else the newest stored file that has batch
    benchmarks) and the history plot; returns the paths written. ``plt``: matplotlib.pyplot
    (imported here when not given)."""
    plt = plt or _pyplot()
    plot_dir.mkdir(parents=True, exist_ok=True)
    written = []
    source, source_data = path, data
    if not _batch_points(data):
        for _, p, d in reversed(stored_results(results_dir)):
            if _batch_points(d):
                source, source_data = p, d
                break
        else:
            source_data = None
    if source_data is not None:
        out = plot_dir / f"{Path(source).stem}-batch.png"
        plot_batch(plt, source_data, Path(source).name, out)
        written.append(out)
    else:
        print("[bench] no coder-batch benchmarks in this run or in the stored results: "
              "no batch-size plot (run --group coder)")
    out = plot_dir / f"history-{re.sub(r'[^A-Za-z0-9_.-]+', '_', metric)}.png"
    if plot_history(plt, stored_results(results_dir), metric, history_benches, out, results_dir):
        written.append(out)
    else:
        print(f"[bench] no stored results in {results_dir} have {metric} for "
              f"{', '.join(history_benches)}: no history plot")
    return written


def _batch_points(data: dict) -> dict:
    """``{(op, threads): [(batch, Msym/s, low, high, images/s per Msym/s)]}``."""
    series: dict = {}
    for bench in data.get("benchmarks", []):
        info = bench.get("extra_info") or {}
        if "batch" not in info or "Msym_per_s" not in info:
            continue
        value = info["Msym_per_s"]
        low, high = _rate_band(bench, value)
        per_image = info["symbols"] / info["batch"]
        series.setdefault((info["op"], info["threads"]), []).append(
            (info["batch"], value, low, high, 1e6 / per_image))
    for points in series.values():
        points.sort()
    return series


def _rate_band(bench: dict, value: float) -> tuple:
    """The rate at the third and first quartile of the rounds (rates go as 1 / time)."""
    stats = bench.get("stats") or {}
    med, q1, q3 = stats.get("median"), stats.get("q1"), stats.get("q3")
    if med and q1 and q3:
        return value * med / q3, value * med / q1
    return value, value


def _other_load(data: dict, benches=None) -> Optional[float]:
    """Largest ``other_load_cores`` of ``benches`` (default: all of the file), else the run's."""
    values = [b.get("extra_info", {}).get("other_load_cores")
              for b in (data.get("benchmarks", []) if benches is None else benches)]
    values = [v for v in values if isinstance(v, (int, float))]
    if values:
        return max(values)
    return (data.get("run") or {}).get("other_load_cores")


def _subtitle(data: dict, source: str) -> str:
    machine = data.get("machine") or {}
    cpu = machine.get("cpu") or (data.get("machine_info", {}).get("cpu", {}) or {}).get("brand_raw", "?")
    cores = machine.get("cores") or (data.get("machine_info", {}).get("cpu", {}) or {}).get("count", "?")
    text = f"{cpu}, {cores} cores; {result_date(data)[:16]}; git {result_commit(data)}; {source}"
    load = (data.get("run") or {}).get("other_load_cores")
    if isinstance(load, (int, float)) and load > DISTURBED_CORES:
        text += f"\nother processes used {load:.2f} cores during the run: numbers disturbed"
    return text


def plot_batch(plt, data: dict, source: str, out: Path) -> None:
    series = _batch_points(data)
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    colors = {"encode": "tab:blue", "decode": "tab:orange"}
    styles = {1: ("-", "o"), 2: ("--", "s")}
    per_image = None
    for (op, threads), points in sorted(series.items()):
        b = [p[0] for p in points]
        y = [p[1] for p in points]
        err = [[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]]
        ls, marker = styles.get(threads, (":", "^"))
        ax.errorbar(b, y, yerr=err, color=colors.get(op), ls=ls, marker=marker, capsize=3,
                    label=f"{op}, {threads} thread{'s' if threads > 1 else ''}")
        per_image = points[0][4]
    ax.set_xscale("log", base=2)
    batches = sorted({p[0] for pts in series.values() for p in pts})
    ax.set_xticks(batches)
    ax.set_xticklabels([str(b) for b in batches])
    ax.set_xlabel("batch size (images = range-coded streams per call)")
    ax.set_ylabel("Msym/s (median round; bars: IQR)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    info = next((b["extra_info"] for b in data["benchmarks"]
                 if "batch" in (b.get("extra_info") or {})), {})
    image = "x".join(info.get("workload", "?").split("x")[1:])
    if per_image:
        sec = ax.secondary_yaxis("right", functions=(lambda m: m * per_image,
                                                     lambda i: i / per_image))
        sec.set_ylabel(f"images/s (latent {image} per image)")
    quick = " (quick run)" if (data.get("run") or {}).get("quick") else ""
    ax.set_title(f"fastcodec range coder: throughput vs batch size{quick}\n"
                 + _subtitle(data, source), fontsize=9)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def _metric_band(bench: dict, metric: str, value: float) -> tuple:
    stats = bench.get("stats") or {}
    med, q1, q3 = stats.get("median"), stats.get("q1"), stats.get("q3")
    if not (med and q1 and q3):
        return value, value
    if metric.endswith("_per_s"):
        return value * med / q3, value * med / q1
    if metric in ("ns_per_symbol", "seconds", "ms"):
        return value * q1 / med, value * q3 / med
    return value, value


def _short_cpu(name: str) -> str:
    """``Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz`` -> ``Intel Xeon Gold 6338``."""
    name = re.sub(r"\((R|TM|tm)\)|\bCPU\b|\bProcessor\b|@\s*[\d.]+\s*GHz", " ", name)
    return " ".join(name.split()) or "?"


def machine_name(data: dict) -> str:
    """Short CPU name, and the GPU's when there is one (``Intel Xeon``, ``AMD EPYC 7B13 +
    H100 80GB HBM3``), from the machine block or pytest-benchmark's ``machine_info``."""
    ident = machine_identity(data)
    text = _short_cpu(str(ident["CPU"] or "?"))
    if ident["GPU"] not in (None, "none"):
        text += " + " + re.sub(r"^NVIDIA\s+", "", str(ident["GPU"]))
    return text


def history_series(found: list, metric: str, patterns: tuple) -> tuple:
    """``(runs, series)`` of the history plot: ``runs`` = one x-tick label per stored file that
    has a point (date, commit, machine, quick / busy); ``series[(benchmark, workload, model,
    machine)] = [(x, value, low, high, busy)]``. ``model``: the row's ``extra_info["model"]``
    ("" without one); ``machine``: :func:`machine_name` when the files come from more than one
    machine, else "" -- a line never joins different models or machines."""
    picked = []
    for date, path, data in found:
        points = []
        for bench in data["benchmarks"]:
            info = bench.get("extra_info") or {}
            if not isinstance(info.get(metric), (int, float)):
                continue
            if not any(p == bench["name"] or p in bench["name"] for p in patterns):
                continue
            points.append((bench, info))
        if points:
            picked.append((date, data, points))
    several = len({machine_name(data) for _, data, _ in picked}) > 1
    series: dict = {}
    runs = []
    for x, (date, data, points) in enumerate(picked):
        machine = machine_name(data)
        where = textwrap.fill(machine, 22)
        if not data.get("machine"):
            where += "\n(no machine block)"
        quick = " quick" if (data.get("run") or {}).get("quick") else ""
        label = f"{date[:10]} {date[11:16]}\n{result_commit(data)}\n{where}{quick}"
        load = _other_load(data, [b for b, _ in points])
        if isinstance(load, (int, float)) and load > DISTURBED_CORES:
            label += f"\nbusy: {load:.1f} cores"
        runs.append(label)
        for bench, info in points:
            value = float(info[metric])
            low, high = _metric_band(bench, metric, value)
            key = (_short_name(bench["name"]), info.get("workload", "?"),
                   str(info.get("model") or ""), machine if several else "")
            busy = info.get("other_load_cores", 0) or 0
            series.setdefault(key, []).append((x, value, low, high, busy > DISTURBED_CORES))
    return runs, series


def series_label(key: tuple, workloads: set) -> str:
    """Legend entry of a history series: benchmark, model, machine (when the plot has several)
    and workload (when it has several)."""
    name, workload, model, machine = key
    label = name + (f" {model}" if model else "") + (f" on {machine}" if machine else "")
    return label + (f" ({workload})" if len(workloads) > 1 else "")


def plot_history(plt, found: list, metric: str, patterns: tuple, out: Path,
                 results_dir: Path) -> bool:
    """One line per (benchmark, workload, model, machine) over the stored results files, in
    date order (:func:`history_series`)."""
    runs, series = history_series(found, metric, patterns)
    if not runs:
        return False
    fig, ax = plt.subplots(figsize=(max(7.5, 1.1 * len(runs) + 3), 5.2), dpi=120)
    workloads = {k[1] for k in series}
    any_busy = False
    for i, (key, pts) in enumerate(sorted(series.items())):
        label = series_label(key, workloads)
        color = f"C{i % 10}"
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts],
                    yerr=[[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]],
                    marker="o", capsize=3, label=label, color=color)
        busy = [p for p in pts if p[4]]
        if busy:  # hollow markers: other processes used the CPU while it was timed
            any_busy = True
            ax.plot([p[0] for p in busy], [p[1] for p in busy], "o", ms=9, mfc="white",
                    mec=color, zorder=3)
    if any_busy:
        ax.plot([], [], "o", mfc="white", mec="gray",
                label=f"hollow: other processes used > {DISTURBED_CORES} cores while timed")
    ax.set_xticks(range(len(runs)))
    ax.set_xticklabels(runs, fontsize=7)
    ax.set_xlim(-0.5, len(runs) - 0.5)
    ax.set_xlabel("stored results, oldest first (date, git commit, + = modified tree, machine)")
    banded = metric.endswith("_per_s") or metric in ("ns_per_symbol", "ms", "seconds")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric) + ("; bars: IQR" if banded else ""))
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    only = f"; workload {next(iter(workloads))}" if len(workloads) == 1 else ""
    unit = UNITS.get(metric, (metric,))[0]
    ax.set_title(f"fastcodec benchmarks: history of {unit} across {results_dir.name}/*.json{only}",
                 fontsize=9)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return True


if __name__ == "__main__":
    sys.exit(main())
