"""The report of a run: the per kernel x arch summary, the text table printed to the terminal and
the Markdown file (``benches/results/kernel-resources.md``)."""

from __future__ import annotations

import collections

from .variants import variant_label

def summarize(results: list, cuda_builds: list) -> list:
    groups: dict = collections.OrderedDict()
    for r in results:
        groups.setdefault((f"triton:{variant_label(r)}", r["arch"]), []).append(r)
    for b in cuda_builds:
        for k in b.get("kernels", []):
            base = k["kernel"].split("<")[0]
            groups.setdefault((f"cuda:{base}", b["arch"]), []).append(k)
    out = []
    for (name, arch), rs in groups.items():
        ok = [r for r in rs if "error" not in r and r.get("registers") is not None]
        tc = [r for r in ok if r.get("tensor_core_path")]
        row = {
            "kernel": name, "arch": arch, "variants": len(rs),
            "failed": sum(1 for r in rs if r.get("fail_reasons")),
            "registers_min": min((r["registers"] for r in ok), default=None),
            "registers_max": max((r["registers"] for r in ok), default=None),
            "spill_bytes_max": max((r["spill_stores"] + r["spill_loads"] for r in ok),
                                   default=None),
            "stack_bytes_max": max((r["stack_bytes"] for r in ok), default=None),
            "smem_bytes_min": min((r["smem_bytes"] for r in ok), default=None),
            "smem_bytes_max": max((r["smem_bytes"] for r in ok), default=None),
        }
        if name.startswith("triton:"):
            key = "wgmma" if arch >= 90 else "mma_sync"
            row["tensor_core_variants"] = len(tc)
            row["tensor_core_with_matrix_instr"] = sum(1 for r in tc if r["ptx"][key])
            row["fma_variants_with_matrix_instr"] = sum(
                1 for r in ok
                if not r["tensor_core_path"] and (r["ptx"]["wgmma"] or r["ptx"]["mma_sync"]))
            row["mma_kinds"] = sorted({m for r in ok for m in r["ptx"]["mma_kinds"]})
        out.append(row)
    return out


def _fmt_rows(header, rows) -> str:
    widths = ([max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows
              else [len(h) for h in header])
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


_HEADER = ["kernel", "config", "dtype", "K", "arch", "regs", "spill st/ld", "stack", "smem B",
           "matrix", "verdict"]


def _triton_row(r) -> list:
    if "error" in r:
        return [variant_label(r), r["config_label"], r["precision"], r["k_walk"], f"sm_{r['arch']}",
                "-", "-", "-", "-", "?", "FAIL"]
    return [variant_label(r), r["config_label"], r["precision"], r["k_walk"], f"sm_{r['arch']}",
            r["registers"], f"{r['spill_stores']}/{r['spill_loads']}", r["stack_bytes"],
            r["smem_bytes"],
            r["matrix"] if r["tensor_core_path"] else f"{r['matrix']} (fma)", r["verdict"]]


def _cuda_rows(report) -> list:
    rows = []
    for b in report["cuda"].get("builds", []):
        if "error" in b:
            rows.append([b["file"], "-", "-", "-", f"sm_{b['arch']}", "-", "-", "-", "-", "n/a",
                         "FAIL"])
        for k in b.get("kernels", []):
            rows.append([k["kernel"], "-", "-", "-", f"sm_{b['arch']}", k["registers"],
                         f"{k['spill_stores']}/{k['spill_loads']}", k["stack_bytes"],
                         k["smem_bytes"], "n/a (fma)", k["verdict"]])
    return rows


def _summary_rows(report) -> tuple[list, list]:
    header = ["kernel", "arch", "variants", "failed", "regs min-max", "max spill B", "max stack B",
              "smem B min-max", "matrix instr"]
    rows = []
    for s in report["summary"]:
        if s["kernel"].startswith("triton:"):
            mi = (f"{'wgmma' if s['arch'] >= 90 else 'mma.sync'} in "
                  f"{s['tensor_core_with_matrix_instr']}/{s['tensor_core_variants']} TC paths")
        else:
            mi = "none (FMA kernel)"
        rows.append([s["kernel"], f"sm_{s['arch']}", s["variants"], s["failed"],
                     f"{s['registers_min']}-{s['registers_max']}", s["spill_bytes_max"],
                     s["stack_bytes_max"],
                     f"{s['smem_bytes_min']}-{s['smem_bytes_max']}", mi])
    return header, rows


def format_table(report) -> str:
    parts = []
    by_kernel = collections.OrderedDict()
    for r in report["triton"]:
        by_kernel.setdefault(variant_label(r), []).append(_triton_row(r))
    for name, rows in by_kernel.items():
        parts.append(f"\n== Triton {name} ==\n" + _fmt_rows(_HEADER, rows))
    if report["cuda"].get("status") == "ok":
        parts.append("\n== CUDA C++ (" + ", ".join(report["cuda"]["sources"]) + ") ==\n"
                     + _fmt_rows(_HEADER, _cuda_rows(report)))
    elif report["cuda"].get("message"):
        parts.append("\n== CUDA C++ ==\n" + report["cuda"]["message"])
    header, rows = _summary_rows(report)
    parts.append("\n== Summary ==\n" + _fmt_rows(header, rows))
    for n in report["notes"]:
        parts.append("note: " + n)
    if report["failures"]:
        parts.append(f"\nFAILED ({len(report['failures'])}):\n"
                     + "\n".join("  " + f for f in report["failures"]))
    else:
        parts.append(f"\nPASSED ({len(report['triton'])} Triton variants, {report['scope']} scope, "
                     f"{report['elapsed_s']} s)")
    return "\n".join(parts)


def _md_table(header, rows) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def format_markdown(report) -> str:
    cuda = report["cuda"]
    lines = [
        "# Kernel resource check",
        "",
        f"Produced by `{report['command'] or 'python -m fastcodec.kernels.check'}` on "
        f"{report['date']} (git {str(report['git_commit'])[:12]}"
        f"{' + uncommitted changes' if report['git_dirty'] else ''}), "
        f"{report['elapsed_s']} s with {report['jobs']} worker(s) on a machine without a GPU.",
        "",
        f"* Triton {report['triton_version']}, ptxas {report['ptxas']['version']} "
        f"(`{report['ptxas']['path']}`)",
        f"* nvcc: {cuda.get('nvcc_version') or cuda.get('message') or cuda.get('status')}",
        f"* Scope: {report['scope_description']}",
        f"* Tensor cores: {report['tensor_core_policy']}",
        "* Fails on: spills, shared memory per block above "
        + ", ".join(f"{v} B on sm_{a}" for a, v in report["smem_limit_bytes"].items())
        + " or above the prune's estimate (`configs.smem_estimate`), ptxas's serialized-wgmma "
        "warning, missing matrix instructions on a tensor-core path.",
        f"* Result: **{'PASSED' if report['passed'] else 'FAILED'}**. A config that fails is "
        "removed from (or replaced in) the tuning lists of `fastcodec/kernels/configs.py`, whose "
        "comments say which and why.",
        "",
        "## Summary (per kernel x arch)",
        "",
        _md_table(*_summary_rows(report)),
        "",
    ]
    if report["failures"]:
        lines += ["## Failures", ""] + [f"* {f}" for f in report["failures"]] + [""]
    # One row per kernel x config x dtype/precision; a column per arch x K walk.
    lines += ["## Triton variants", "",
              "Each cell: registers / spilled bytes (stores + loads) / shared memory per block in "
              "bytes; `tap` = tap-major K walk, `flat` = flattened K. `matrix`: tensor-core "
              "instructions found in the PTX (`mma` = mma.sync, `+ldm` = with ldmatrix, `wgmma` = "
              "wgmma.mma_async), per arch; `(fma)`: IEEE fp32, where none are expected. Full "
              "figures (stack, barriers, SASS counts, mma shapes) in the JSON.",
              ""]
    cols = [(a, w) for a in report["archs"] for w in ("tap", "flat")]
    grouped = collections.OrderedDict()
    for r in report["triton"]:
        grouped.setdefault((variant_label(r), r["config_label"], r["precision"]), {})[
            (r["arch"], r["k_walk"])] = r

    def cell(r):
        if r is None:
            return "-"
        if "error" in r:
            return "compile error"
        return f"{r['registers']} / {r['spill_stores'] + r['spill_loads']} / {r['smem_bytes']}"

    rows = []
    for (kern, cfg, prec), got in grouped.items():
        rs = list(got.values())
        matrix = " / ".join("/".join(sorted({r["matrix"] for r in rs if r["arch"] == a})) or "-"
                            for a in report["archs"])
        if not rs[0]["tensor_core_path"]:
            matrix += " (fma)"
        verdict = "ok" if all(not r["fail_reasons"] for r in rs) else "FAIL"
        rows.append([kern, cfg, prec] + [cell(got.get(c)) for c in cols] + [matrix, verdict])
    lines.append(_md_table(["kernel", "config", "dtype"] + [f"sm_{a} {w}" for a, w in cols]
                           + ["matrix", "verdict"], rows))
    lines.append("")
    if cuda.get("status") == "ok":
        n = collections.Counter(b["arch"] for b in cuda["builds"] for _ in b.get("kernels", []))
        lines += ["## CUDA C++ kernels", "",
                  f"`{cuda['builds'][0]['command']}` (and likewise per arch): "
                  + ", ".join(f"{c} entry points on sm_{a}" for a, c in sorted(n.items()))
                  + "; registers / spills / shared memory per instantiation in the JSON "
                  "(`cuda.builds`), ranges in the summary above.", ""]
    elif cuda.get("message"):
        lines += ["## CUDA C++ kernels", "", cuda["message"], ""]
    if report["notes"]:
        lines += ["## Notes", ""] + [f"* {n}" for n in report["notes"]] + [""]
    return "\n".join(lines)
