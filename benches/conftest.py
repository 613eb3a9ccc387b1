"""Options, fixtures and the end-of-session summary of the fastcodec benchmarks.

Run from the repository root::

    python -m pytest benches -q                  # full workload (8x192x32x48 symbols)
    python -m pytest benches -q --quick          # CI-sized (2x192x8x12), a few seconds
    python -m pytest benches -q --benchmark-json out.json --bench-summary out.txt

``benches/run_coder_bench.sh`` runs the full benchmark once the CPU is idle and saves
``benches/results/coder-cpu-<date>.{txt,json}`` (machine, command, load, summary; pytest-benchmark
JSON). Each measurement records in ``extra_info["other_load_cores"]`` how much CPU the rest of the
machine used while it was timed; the summary warns when that exceeds 0.15 cores.

``fastcodec bench [--group coder|ops|all] [--quick] [--compare OLD.json] [--plot]`` runs this
suite in a subprocess and stores ``benches/results/<group>-<host>-<date>-<commit>.json`` with the
machine (fastcodec/bench/; benches/README.md).

``python -m pytest`` alone does not collect ``benches/`` (the root ``pyproject.toml`` sets
``testpaths = ["tests"]``).

The fused-ops group (``test_bench_ops.py``, workload and timing in ``ops_workload.py``) has its
own ``--ops-*`` options and its own summary section; ``benches/gpu_ops.sh`` runs it on a GPU::

    python -m pytest benches -q -k ops --ops-summary out.txt
"""

from __future__ import annotations

import os
import platform
import statistics
import time

import numpy as np
import pytest

# Above this many cores of CPU used by other processes, a measurement is flagged.
from fastcodec.bench.compare import DISTURBED_CORES

from coder_workload import FULL_SHAPE, QUICK_SHAPE, build_workload

# Rows of the summary, in display order: key -> label.
CODERS = {
    "fastcodec-1t": "fastcodec, 1 thread",
    "fastcodec-2t": "fastcodec, 2 threads",
    "constriction": "constriction",
    "compressai": "compressai",
}
ANCHORS = ("constriction", "compressai")
OPS = ("encode", "decode")

_RESULTS = pytest.StashKey[dict]()
_BATCH = pytest.StashKey[dict]()  # (op, batch, threads) -> extra_info of test_fastcodec_batch
_SKIPS = pytest.StashKey[dict]()
_WORKLOAD = pytest.StashKey[object]()
_CPU_START = pytest.StashKey[tuple]()
_OPS_ENV = pytest.StashKey[object]()  # ops_workload.OpsEnv, once an ops benchmark ran
_OPS_SKIPS = pytest.StashKey[dict]()
_OPS_GIT = pytest.StashKey[str]()
_OPS_CPU_START = pytest.StashKey[tuple]()
_SKIPPED_ANCHORS = pytest.StashKey[list]()  # note_skipped_anchor() records, for the JSON


def pytest_addoption(parser):
    group = parser.getgroup("fastcodec benchmarks")
    group.addoption(
        "--quick",
        action="store_true",
        default=False,
        help=f"small workload {'x'.join(map(str, QUICK_SHAPE))} and few rounds (CI smoke run)",
    )
    group.addoption(
        "--coder-rounds",
        type=int,
        default=None,
        help="timed rounds per coder benchmark (default: 80 fastcodec, 25 constriction, "
        "7 compressai; 5 with --quick)",
    )
    group.addoption(
        "--codec-model",
        default=None,
        metavar="ID",
        help="shipped model the end-to-end codec benchmarks time (default: the default model, "
        "fastcodec.zoo.DEFAULT_MODEL)",
    )
    group.addoption(
        "--bench-summary",
        default=None,
        metavar="PATH",
        help="also write the end-of-session summary table to PATH",
    )
    # fused-ops group (test_bench_ops.py)
    group.addoption(
        "--ops-device",
        choices=("auto", "cuda", "cpu"),
        default="auto",
        help="device of the fused-ops benchmarks (auto: cuda when torch sees a GPU)",
    )
    group.addoption(
        "--ops-dtypes",
        default=None,
        metavar="LIST",
        help="fused-ops dtypes, comma-separated from fp32,fp16,bf16 (default on CUDA: bf16 in both "
        "layouts, fp16 and fp32 channels_last; CPU: fp32)",
    )
    group.addoption(
        "--ops-layouts",
        default=None,
        metavar="LIST",
        help="fused-ops memory layouts, comma-separated from nchw,cl (channels_last)",
    )
    group.addoption(
        "--ops-no-compile",
        action="store_true",
        default=False,
        help="skip the torch.compile variants of the fused-ops benchmarks",
    )
    group.addoption(
        "--ops-compile-mode",
        default=None,
        help="torch.compile mode of the fused-ops baseline (default: max-autotune on CUDA, "
        "default on CPU)",
    )
    group.addoption(
        "--ops-rounds",
        type=int,
        default=None,
        help="pytest-benchmark rounds per fused-ops benchmark (default: CPU 40, 5 with --quick; "
        "CUDA 15 synchronous calls, next to the CUDA-event timing)",
    )
    group.addoption(
        "--ops-cuda-backend",
        action="store_true",
        default=False,
        help="fused-ops on CUDA: also time backend='cuda' (the CUDA C++ kernels), when built",
    )
    group.addoption(
        "--ops-threads",
        type=int,
        default=None,
        help="torch CPU threads for the fused-ops benchmarks on CPU (default 1; 0: torch's "
        "default)",
    )
    group.addoption(
        "--ops-deadline",
        type=float,
        default=None,
        metavar="EPOCH",
        help="wall-clock time (seconds since the epoch) after which fused-ops benchmarks that "
        "would not finish are skipped with a note (torch.compile ones first)",
    )
    group.addoption(
        "--ops-summary",
        default=None,
        metavar="PATH",
        help="also write the fused-ops summary (machine, command, table) to PATH",
    )


def pytest_configure(config):
    config.stash[_RESULTS] = {}
    config.stash[_BATCH] = {}
    config.stash[_SKIPS] = {}
    config.stash[_OPS_SKIPS] = {}
    config.stash[_SKIPPED_ANCHORS] = []
    config.stash[_CPU_START] = _cpu_snapshot()


def _cpu_snapshot():
    """``(wall, busy CPU seconds of the whole machine, CPU seconds of this process)``; the
    machine's figure is None where ``/proc/stat`` is unavailable."""
    busy = None
    try:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:9]]
        hz = os.sysconf("SC_CLK_TCK")
        busy = (sum(fields) - fields[3] - fields[4]) / hz  # all but idle and iowait
    except (OSError, ValueError, IndexError):
        pass
    t = os.times()
    return time.monotonic(), busy, t.user + t.system




def _other_cores(start, end) -> float | None:
    """Cores' worth of CPU that other processes used on average between two snapshots."""
    wall = end[0] - start[0]
    # Both counters tick at 100 Hz or so: below a quarter second the estimate is mostly noise.
    if start[1] is None or end[1] is None or wall < 0.25:
        return None
    others = max(0.0, (end[1] - start[1]) - (end[2] - start[2])) / wall
    return min(others, float(os.cpu_count() or 1))


def _other_load(config) -> str | None:
    """How busy the rest of the machine was during the session."""
    start = config.stash.get(_CPU_START, None)
    if start is None:
        return None
    end = _cpu_snapshot()
    others = _other_cores(start, end)
    if others is None:
        return None
    return (
        f"other processes used {others:.2f} of {os.cpu_count()} cores on average during the "
        f"session ({end[0] - start[0]:.1f} s)"
    )


# --------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session")
def quick(pytestconfig) -> bool:
    return bool(pytestconfig.getoption("--quick"))


@pytest.fixture(scope="session")
def coder_workload(pytestconfig, quick):
    """The coder workload, built once per session."""
    workload = build_workload(QUICK_SHAPE if quick else FULL_SHAPE)
    pytestconfig.stash[_WORKLOAD] = workload
    return workload


@pytest.fixture(scope="session")
def rounds(pytestconfig, quick):
    """``rounds(coder)``: how many timed rounds a benchmark of that coder runs."""
    forced = pytestconfig.getoption("--coder-rounds")
    defaults = {"fastcodec": 80, "constriction": 25, "compressai": 7}

    def pick(coder: str) -> int:
        if forced:
            return max(1, forced)
        return 5 if quick else defaults[coder.split("-")[0]]

    return pick


@pytest.fixture(scope="session")
def coder_results(pytestconfig):
    """Registry ``{(coder_key, op): metrics}`` shared by the tests and the summary."""
    return pytestconfig.stash[_RESULTS]


@pytest.fixture(scope="session")
def batch_results(pytestconfig):
    """Registry ``{(op, batch, threads): extra_info}`` of the batch-size benchmarks."""
    return pytestconfig.stash[_BATCH]


@pytest.fixture(scope="session")
def note_skip(pytestconfig):
    """``note_skip(coder_key, reason)``: prints the reason, keeps it for the summary and skips."""
    skips = pytestconfig.stash[_SKIPS]

    def skip(key: str, reason: str):
        if key not in skips:
            skips[key] = reason
            print(f"\n[benches] {CODERS.get(key, key)} skipped: {reason}", flush=True)
            if key in ANCHORS:
                note_skipped_anchor(pytestconfig, group="coder", anchor=key,
                                    ratio=f"speedup_vs_{key}", reason=reason,
                                    applies=_is_fastcodec_coder)
        pytest.skip(f"{CODERS.get(key, key)}: {reason}")

    return skip


def _is_fastcodec_coder(info: dict) -> bool:
    return str(info.get("coder", "")).startswith("fastcodec")


def note_skipped_anchor(config, *, group: str, anchor: str, ratio: str, reason: str,
                        applies) -> None:
    """Keeps a skipped anchor for the results JSON: ``skipped_anchors`` (written by
    :func:`pytest_benchmark_update_json`) lists ``{group, anchor, ratio, reason, rows}``, where
    ``ratio`` is the ``extra_info`` key the anchor would have filled and ``rows`` the benchmarks
    of ``group`` that would have had it (``applies(extra_info)``), so ``fastcodec bench`` (also
    ``--from FILE``) shows n/a with the reason instead of leaving the column out."""
    records = config.stash.get(_SKIPPED_ANCHORS, None)
    if records is None:
        records = config.stash[_SKIPPED_ANCHORS] = []
    if not any(r["group"] == group and r["anchor"] == anchor for r in records):
        records.append({"group": group, "anchor": anchor, "ratio": ratio, "reason": reason,
                        "applies": applies})


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_json(config, benchmarks, output_json):
    """pytest-benchmark's hook: adds ``skipped_anchors`` (see :func:`note_skipped_anchor`)."""
    skipped = []
    for rec in config.stash.get(_SKIPPED_ANCHORS, []):
        rows = [b.get("name") for b in output_json.get("benchmarks", [])
                if b.get("group") == rec["group"] and rec["applies"](b.get("extra_info") or {})]
        skipped.append({k: v for k, v in rec.items() if k != "applies"} | {"rows": rows})
    if skipped:
        output_json["skipped_anchors"] = skipped


@pytest.fixture(scope="session")
def ops_env(pytestconfig):
    """The fused-ops session state (``ops_workload.OpsEnv``): settings, machine, ceilings,
    the current case's inputs and the results. Imports torch (only the ops group needs it)."""
    import ops_workload

    env = ops_workload.OpsEnv(ops_workload.settings_from_config(pytestconfig))
    pytestconfig.stash[_OPS_ENV] = env
    pytestconfig.stash[_OPS_CPU_START] = _cpu_snapshot()
    return env


@pytest.fixture(scope="session")
def ops_note_skip(pytestconfig):
    """``ops_note_skip(key, reason)``: prints the reason once per key, keeps it for the ops
    summary and skips the test."""
    skips = pytestconfig.stash[_OPS_SKIPS]

    def skip(key: str, reason: str):
        if key not in skips:
            skips[key] = reason
            print(f"\n[benches] ops {key} skipped: {reason}", flush=True)
        pytest.skip(f"ops {key}: {reason}")

    return skip


# --------------------------------------------------------------------------------------------
# throughput reporting


class Timed:
    """Wraps a function and keeps the wall time of each call (also when pytest-benchmark's own
    timing is disabled, e.g. with ``--benchmark-disable``)."""

    def __init__(self, fn):
        self.fn = fn
        self.durations: list[float] = []

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        out = self.fn(*args, **kwargs)
        self.durations.append(time.perf_counter() - t0)
        return out


def run_benchmark(benchmark, fn, rounds: int, warmup_rounds: int = 1):
    """Times ``fn()`` with pytest-benchmark (``rounds`` rounds of one call, after warm-up) and
    returns ``(last result, seconds per call)`` where the seconds are the median round."""
    timed = Timed(fn)
    before = _cpu_snapshot()
    result = benchmark.pedantic(timed, rounds=rounds, iterations=1, warmup_rounds=warmup_rounds)
    others = _other_cores(before, _cpu_snapshot())
    if others is not None:  # CPU the rest of the machine used meanwhile, in cores
        benchmark.extra_info["other_load_cores"] = round(others, 3)
    stats = getattr(getattr(benchmark, "stats", None), "stats", None)
    if stats is not None and getattr(stats, "rounds", 0):
        seconds, best = float(stats.median), float(stats.min)
    else:  # benchmarking disabled: use our own clock on whatever calls ran
        kept = timed.durations[-rounds:] or timed.durations
        seconds, best = statistics.median(kept), min(kept)
    return result, seconds, best


def report_throughput(
    benchmark,
    results: dict,
    *,
    coder: str,
    op: str,
    workload,
    seconds: float,
    best_seconds: float,
    stream_bytes: int,
    threads: int = 1,
    version: str | None = None,
    note: str | None = None,
    state_bytes_per_stream: int = 0,
) -> dict:
    """Records the throughput of one benchmark in ``benchmark.extra_info`` and in the registry.

    Msym/s, ns/symbol and MB/s (compressed bytes produced by encode / consumed by decode) are
    from the median round; bits/symbol counts every byte of every stream; the overhead is
    relative to the table cross-entropy of the workload (coder_workload.ideal_bits), in total
    and for the payload alone (without ``state_bytes_per_stream``, the fixed final coder state).
    """
    n = workload.num_symbols
    bits = 8.0 * stream_bytes
    info = {
        "coder": coder,
        "op": op,
        "threads": threads,
        "symbols": n,
        "streams": workload.num_streams,
        "workload": "x".join(map(str, workload.shape)),
        "timing": "median round",
        "seconds": seconds,
        "best_seconds": best_seconds,
        "Msym_per_s": n / seconds / 1e6,
        "Msym_per_s_best": n / best_seconds / 1e6,
        "ns_per_symbol": seconds / n * 1e9,
        "MB_per_s": stream_bytes / seconds / 1e6,
        "stream_bytes": stream_bytes,
        "bits_per_symbol": bits / n,
        "ideal_bits_per_symbol": workload.ideal_bits_per_symbol,
        "overhead_vs_ideal_pct": (bits / workload.ideal_bits - 1.0) * 100.0,
        "state_bytes_per_stream": state_bytes_per_stream,
        "payload_overhead_vs_ideal_pct": (
            (bits - 8.0 * state_bytes_per_stream * workload.num_streams) / workload.ideal_bits - 1.0
        ) * 100.0,
        "escapes": workload.num_escapes,
    }
    if version:
        info["version"] = version
    if note:
        info["note"] = note
    benchmark.extra_info.update(info)
    # The registry keeps the extra_info dict itself, so ratios filled in later (once the anchors
    # have run) also reach pytest-benchmark's JSON, which is written at the end of the session.
    results[(coder, op)] = benchmark.extra_info
    fill_ratios(results)
    return benchmark.extra_info


def report_batch(benchmark, results: dict, *, op: str, batch: int, threads: int, symbols: int,
                 image_shape: tuple, seconds: float, best_seconds: float,
                 stream_bytes: int) -> dict:
    """Records one point of fastcodec's throughput vs batch size (``test_fastcodec_batch``):
    Msym/s, ns/symbol, MB/s as in :func:`report_throughput`, and images/s (one stream = the
    latent of one image, ``image_shape`` = its ``(C, H, W)``)."""
    info = {
        "coder": f"fastcodec-{threads}t",
        "op": op,
        "threads": threads,
        "batch": batch,
        "symbols": symbols,
        "streams": batch,
        "workload": "x".join(map(str, (batch, *image_shape))),
        "timing": "median round",
        "seconds": seconds,
        "best_seconds": best_seconds,
        "Msym_per_s": symbols / seconds / 1e6,
        "ns_per_symbol": seconds / symbols * 1e9,
        "MB_per_s": stream_bytes / seconds / 1e6,
        "images_per_s": batch / seconds,
        "stream_bytes": stream_bytes,
    }
    benchmark.extra_info.update(info)
    results[(op, batch, threads)] = benchmark.extra_info
    return benchmark.extra_info


def fill_ratios(results: dict) -> None:
    """fastcodec speed-ups (Msym/s ratio, same op) over every anchor measured in this run."""
    for (coder, op), info in results.items():
        if not coder.startswith("fastcodec"):
            continue
        for anchor in ANCHORS:
            other = results.get((anchor, op))
            if other is not None:
                info[f"speedup_vs_{anchor}"] = info["Msym_per_s"] / other["Msym_per_s"]


# --------------------------------------------------------------------------------------------
# end of session


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    # Before pytest-benchmark's own hook wrapper writes the JSON.
    fill_ratios(session.config.stash.get(_RESULTS, {}))
    ops_env = session.config.stash.get(_OPS_ENV, None)
    if ops_env is not None:  # ratios of the ops group, into the same extra_info dicts
        import ops_workload

        ops_workload.fill_ratios(ops_env.results)
    yield


def summary_lines(config) -> list[str]:
    results = config.stash.get(_RESULTS, {})
    skips = config.stash.get(_SKIPS, {})
    workload = config.stash.get(_WORKLOAD, None)
    if not results and not skips and not config.stash.get(_BATCH, {}):
        return []
    fill_ratios(results)
    lines = []
    if workload is not None:
        lines.append(f"workload: {workload.describe()}")
        lines.append(
            f"ideal (table cross-entropy, escape payloads not counted): "
            f"{workload.ideal_bits_per_symbol:.4f} bits/symbol; {workload.num_escapes} escaped "
            f"symbols"
        )
    lines.append("throughput: median round; Msym/s = symbols / s; MB/s = compressed bytes / s")
    lines.append("vs ideal: all bytes; payload: without each stream's fixed final coder state "
                 "(fastcodec: 32 bytes)")
    header = (
        f"{'coder':<24}{'enc Msym/s':>11}{'dec Msym/s':>11}{'enc ns/sym':>11}{'dec ns/sym':>11}"
        f"{'enc MB/s':>10}{'bits/sym':>10}{'vs ideal':>10}{'payload':>10}"
    )
    disturbed = []
    lines.append(header)
    lines.append("-" * len(header))

    def fmt(value, spec):
        return format(value, spec) if value is not None else "-"

    for key, label in CODERS.items():
        enc, dec = results.get((key, "encode")), results.get((key, "decode"))
        if enc is None and dec is None:
            reason = skips.get(key)
            if reason:
                lines.append(f"{label:<24}skipped: {reason}")
            continue
        any_info = enc or dec
        version = any_info.get("version")
        name = f"{label} {version}" if version and not key.startswith("fastcodec") else label
        lines.append(
            f"{name:<24}"
            f"{fmt(enc and enc['Msym_per_s'], '11.1f'):>11}"
            f"{fmt(dec and dec['Msym_per_s'], '11.1f'):>11}"
            f"{fmt(enc and enc['ns_per_symbol'], '11.2f'):>11}"
            f"{fmt(dec and dec['ns_per_symbol'], '11.2f'):>11}"
            f"{fmt(enc and enc['MB_per_s'], '10.1f'):>10}"
            f"{any_info['bits_per_symbol']:>10.4f}"
            f"{any_info['overhead_vs_ideal_pct']:>+9.3f}%"
            f"{any_info['payload_overhead_vs_ideal_pct']:>+9.4f}%"
        )
        for op, info in (("encode", enc), ("decode", dec)):
            load = info.get("other_load_cores") if info else None
            if load is not None and load > DISTURBED_CORES:
                disturbed.append(f"{label} {op} ({load:.2f} cores)")
    ratio_lines = []
    for anchor in ANCHORS:
        parts = []
        for key in ("fastcodec-1t", "fastcodec-2t"):
            for op in OPS:
                info = results.get((key, op))
                if info is not None and f"speedup_vs_{anchor}" in info:
                    parts.append(f"{op} {key[-2:]} {info[f'speedup_vs_{anchor}']:.2f}x")
        if parts:
            ratio_lines.append(f"fastcodec/{anchor}: " + ", ".join(parts))
        elif anchor in skips:
            ratio_lines.append(f"fastcodec/{anchor}: n/a ({anchor} skipped)")
    if ratio_lines:
        lines.append("speed ratios (Msym/s, same op; 1t/2t = fastcodec threads, anchors 1 thread):")
        lines.extend("  " + r for r in ratio_lines)
    batch = config.stash.get(_BATCH, {})
    if batch:
        lines.append("fastcodec vs batch size (images of the workload; Msym/s encode / decode):")
        for threads in sorted({t for _, _, t in batch}):
            parts = []
            for b in sorted({b for _, b, t in batch if t == threads}):
                enc, dec = batch.get(("encode", b, threads)), batch.get(("decode", b, threads))
                parts.append(f"b{b} {fmt(enc and enc['Msym_per_s'], '.0f')}/"
                             f"{fmt(dec and dec['Msym_per_s'], '.0f')}")
            lines.append(f"  {threads} thread{'s' if threads > 1 else ''}: " + ", ".join(parts))
    load = _other_load(config)
    if load:
        lines.append(load)
    if disturbed:
        lines.append(
            f"WARNING: other processes used > {DISTURBED_CORES} cores while timing "
            + ", ".join(disturbed)
            + "; those numbers are unreliable"
        )
    if ("constriction", "encode") in results:
        lines.append(
            "note: constriction codes escaped symbols as the escape bin only (no bypass payload); "
            "its tables are the same 16-bit frequencies re-quantized to its 24-bit precision"
        )
    return lines


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    _coder_terminal_summary(terminalreporter, config)
    _ops_terminal_summary(terminalreporter, exitstatus, config)


def _coder_terminal_summary(terminalreporter, config):
    lines = summary_lines(config)
    if not lines:
        return
    terminalreporter.section("range coder summary")
    for line in lines:
        terminalreporter.write_line(line)
    path = config.getoption("--bench-summary")
    if path:
        env = f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}"
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as fh:
            fh.write(f"# {env}\n")
            fh.write("\n".join(lines) + "\n")
        terminalreporter.write_line(f"summary written to {path}")


def _ops_terminal_summary(terminalreporter, exitstatus, config):
    env = config.stash.get(_OPS_ENV, None)
    skips = config.stash.get(_OPS_SKIPS, {})
    if env is None and not skips:
        return
    lines = _ops_summary_lines(config)
    terminalreporter.section("fused ops summary")
    for line in lines:
        terminalreporter.write_line(line)
    path = config.getoption("--ops-summary")
    if path:
        _write_ops_summary(config, path, lines, f"pytest exit status: {int(exitstatus)}")
        terminalreporter.write_line(f"ops summary written to {path}")


def pytest_runtest_teardown(item, nextitem):
    """With ``--ops-summary``, the file is rewritten after each ops benchmark, so a run stopped
    from outside (a time limit) still leaves the results so far."""
    if "ops_item" not in getattr(item, "fixturenames", ()):
        return
    path = item.config.getoption("--ops-summary")
    env = item.config.stash.get(_OPS_ENV, None)
    if path and env is not None:
        _write_ops_summary(item.config, path, _ops_summary_lines(item.config),
                           "run in progress (partial results)")


def _ops_summary_lines(config) -> list:
    import ops_workload

    env = config.stash.get(_OPS_ENV, None)
    lines = ops_workload.summary_lines(env, config.stash.get(_OPS_SKIPS, {}), DISTURBED_CORES)
    start = config.stash.get(_OPS_CPU_START, None)
    if start is not None:
        end = _cpu_snapshot()
        others = _other_cores(start, end)
        if others is not None:
            lines.append(f"other processes used {others:.2f} of {os.cpu_count()} cores on average "
                         f"during the ops benchmarks ({end[0] - start[0]:.1f} s)")
            if others > DISTURBED_CORES and env is not None and env.kind == "cpu":
                lines.append(f"WARNING: that is more than {DISTURBED_CORES} cores: the CPU "
                             "timings above are unreliable")
    return lines


def _write_ops_summary(config, path: str, lines: list, state: str) -> None:
    import shlex
    import subprocess

    args = " ".join(shlex.quote(a) for a in config.invocation_params.args)
    rev = config.stash.get(_OPS_GIT, None)
    if rev is None:
        try:
            git = ["git", "-C", str(config.rootpath)]
            rev = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True, timeout=10).stdout.strip()
            dirty = subprocess.run(git + ["status", "--porcelain", "--", "benches", "fastcodec",
                                          "csrc"], capture_output=True, text=True, timeout=10)
            if rev and dirty.stdout.strip():
                rev += " (benches/fastcodec/csrc modified in the working tree)"
        except (OSError, subprocess.SubprocessError):
            rev = ""
        config.stash[_OPS_GIT] = rev
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        fh.write(f"fastcodec fused-ops benchmark, {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n")
        fh.write(f"command: python -m pytest {args}\n")
        fh.write(f"machine: {platform.node()}, {platform.platform()}\n")
        if rev:
            fh.write(f"git: {rev}\n")
        fh.write(f"{state}\n\n")
        fh.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
