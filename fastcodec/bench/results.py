"""Stored results files (pytest-benchmark JSON plus the machine and run blocks): loading,
writing and finding them, a benchmark's time and spread, and the table per group."""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from pathlib import Path
from typing import Optional

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


class BenchError(RuntimeError):
    """A usage problem reported as one line (exit status 2)."""


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


def fmt_time(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.4g} {unit}"
    return f"{seconds * 1e9:.4g} ns"


def short_name(name: str) -> str:
    return name[5:] if name.startswith("test_") else name


def group_of(bench: dict) -> str:
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
                    if group_of(b) == group and "fastcodec" in b["name"]]
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
        by_group.setdefault(group_of(bench), []).append(bench)
    skipped = skipped_anchors(data)
    for group, benches in by_group.items():
        infos = [b.get("extra_info") or {} for b in benches]
        units = [k for k in UNITS if any(isinstance(i.get(k), (int, float)) for i in infos)]
        missing = {skip["ratio"]: skip for skip in skipped if skip["group"] == group}
        ratios = sorted({k for i in infos for k in i if k.startswith("speedup_vs_")}
                        | set(missing))
        width = max(24, *(len(short_name(b["name"])) + 2 for b in benches))
        header = f"{'benchmark':<{width}}{'median':>11}{'IQR':>7}{'rounds':>7}"
        header += "".join(f"{UNITS[k][0]:>10}" for k in units)
        header += "".join(f"{'vs ' + k[len('speedup_vs_'):]:>{max(10, len(k) - 7)}}"
                          for k in ratios)
        lines += ["", f"group {group}:", header, "-" * len(header)]
        for bench, info in zip(benches, infos):
            spread = rel_spread(bench)
            row = (f"{short_name(bench['name']):<{width}}{fmt_time(bench_time(bench)):>11}"
                   f"{'-' if spread is None else f'{spread:.1%}':>7}"
                   f"{(bench.get('stats') or {}).get('rounds', '-'):>7}")
            for k in units:
                value = info.get(k)
                _, spec, scale = UNITS[k]
                cell = format(value * scale, spec) if isinstance(value, (int, float)) else "-"
                row += f"{cell:>10}"
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
