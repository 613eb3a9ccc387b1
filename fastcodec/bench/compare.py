"""``--compare``: new/old ratios per benchmark of two results files, flagged beyond the
measured spread, and what differs between the two machines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .results import fmt_time, group_of, short_name, bench_time, rel_spread

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
#: its time is marked unreliable (compare notes, hollow points; the benches' summaries import
#: this and warn at the same level).
DISTURBED_CORES = 0.15


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
    return group_of(bench), bench["name"]


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
            if isinstance(i_old.get(metric), (int, float)) \
                    and isinstance(i_new.get(metric), (int, float)) and i_old[metric] > 0:
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
    width = max([24] + [len(short_name(r.name)) + 2 for r in rows])
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
            alone.setdefault(r.note, []).append(short_name(r.name))
            continue
        if r.ratio is None:
            lines.append(f"{short_name(r.name):<{width}}  ({r.note})")
            continue
        rate = f"{r.metric_ratio:.3f}" if r.metric_ratio is not None else "-"
        spreads = f"{r.spread_old or 0:.1%}/{r.spread_new or 0:.1%}"
        per_symbol = "per symbol" in r.note
        flag, note = r.flag, r.note
        if not r.comparable:  # "not comparable (model X vs Y)" in the flag column
            flag, _, note = r.note.partition("; ")
        line = (f"{short_name(r.name):<{width}}{fmt_time(None if per_symbol else r.old):>11}"
                f"{fmt_time(None if per_symbol else r.new):>11}{r.ratio:>14.3f}{rate:>14}"
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
                 + (": " + ", ".join(f"{short_name(r.name)} {r.flag.lower()} "
                                     f"{r.ratio:.2f}x time" for r in flagged) if flagged else ""))
    if apart:
        lines.append(f"{len(apart)} not comparable (different {'/'.join(IDENTITY_KEYS)}; "
                     "not flagged): " + ", ".join(short_name(r.name) for r in apart))
    if machines:
        lines.append(f"machines differ, old vs new: {'; '.join(machines)} (a flag may be the "
                     "machine, not the code)")
    lines.append("rule: " + COMPARE_RULE.format(factor=factor, floor=floor))
    lines.append("rate new/old: Msym/s (or GB/s) ratio, > 1 faster; limit: the flag threshold on "
                 "|time new/old - 1|; other load: cores' worth of CPU other processes used while "
                 f"that benchmark was timed (> {DISTURBED_CORES}: the time is unreliable)")
    return lines
