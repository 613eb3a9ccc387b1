"""``--plot``: coder throughput vs batch size of one results file, and the history of a metric
across the stored results files (matplotlib, imported only when plotting)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Optional

from .compare import DISTURBED_CORES, machine_identity
from .results import UNITS, short_name, result_commit, result_date, stored_results

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


def import_pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def make_plots(path: Path, data: dict, results_dir: Path, plot_dir: Path, metric: str,
               history_benches: tuple, plt=None) -> list:
    """Writes the batch-size plot (from ``data``, else the newest stored file that has batch
    benchmarks) and the history plot; returns the paths written. ``plt``: matplotlib.pyplot
    (imported here when not given)."""
    plt = plt or import_pyplot()
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
    ident = machine_identity(data)
    cpu, cores = ident["CPU"] or "?", ident["cores"] or "?"
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
            key = (short_name(bench["name"]), info.get("workload", "?"),
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
