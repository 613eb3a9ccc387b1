"""The outputs of an evaluation: strict JSON, the point table, the BD-rate summary and the
rate-distortion plot."""

from __future__ import annotations

import json
import math
from pathlib import Path

from fastcodec.evaluate.common import LABELS


def _finite(obj):
    """The results with non-finite floats as None (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def to_json(results: dict) -> str:
    """``results`` as strict JSON text (inf/nan written as null)."""
    return json.dumps(_finite(results), indent=2, allow_nan=False) + "\n"


def _fmt(value, spec: str) -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def table_lines(results: dict) -> list[str]:
    """The per-point table: codec, setting, bpp, PSNR, MS-SSIM (and in dB), seconds."""
    lines = [f"{'codec':<10}{'quality':>8}{'bpp':>9}{'PSNR dB':>9}{'MS-SSIM':>9}"
             f"{'MS-SSIM dB':>11}{'enc s':>8}{'dec s':>8}"]
    for name, entry in results["codecs"].items():
        for p in entry["points"]:
            lines.append(f"{entry['label']:<10}{p['quality']:>8g}{_fmt(p['bpp'], '.4f'):>9}"
                         f"{_fmt(p['psnr'], '.2f'):>9}{_fmt(p['ms_ssim'], '.4f'):>9}"
                         f"{_fmt(p['ms_ssim_db'], '.2f'):>11}{p['encode_s']:>8.2f}"
                         f"{p['decode_s']:>8.2f}")
    for name, reason in results.get("skipped", {}).items():
        lines.append(f"{LABELS.get(name, name):<10}skipped: {reason}")
    return lines


#: Below this share of the BD interval covered by a measured curve, the extrapolated number is
#: not printed (a cubic fit far outside its points is meaningless; the JSON keeps it).
MIN_BD_COVERAGE = 0.5


def _bd_cell(entry: dict) -> str:
    if "error" in entry:
        return "n/a"
    lo, hi = entry["interval_db"]
    coverage = min(entry["coverage_a"], entry["coverage_b"])
    if entry["extrapolated"] and coverage < MIN_BD_COVERAGE:
        return (f"n/a: measured curves cover only {coverage:.0%} of {lo:.1f}-{hi:.1f} dB "
                f"(ref {entry['coverage_a']:.0%}, codec {entry['coverage_b']:.0%})")
    if entry["percent"] is None or not math.isfinite(entry["percent"]):
        return f"n/a ({lo:.1f}-{hi:.1f} dB)"
    cell = f"{entry['percent']:+.1f}% ({lo:.1f}-{hi:.1f} dB)"
    if entry["extrapolated"]:
        cell += f" extrapolated (covered: ref {entry['coverage_a']:.0%}, " \
                f"codec {entry['coverage_b']:.0%})"
    return cell


def bd_lines(results: dict) -> list[str]:
    """The BD-rate summary (negative: fewer bits than the reference at equal PSNR)."""
    bd = results["bd_rate"]
    ref = LABELS.get(bd["reference"], bd["reference"])
    if "note" in bd:
        return [bd["note"]]
    lines = [f"BD-rate vs {ref} ({bd['metric']}; negative = fewer bits at equal PSNR)"]
    for name, row in bd["codecs"].items():
        label = results["codecs"][name]["label"]
        lines.append(f"  {label:<10} overlap: {_bd_cell(row['overlap'])}")
        lines.append(f"  {'':<10} {bd['range_key']}: {_bd_cell(row[bd['range_key']])}")
        errors = {e["error"] for e in row.values() if "error" in e}
        lines.extend(f"  {'':<10} ({err})" for err in sorted(errors))
    if not bd["codecs"]:
        lines.append("  (no other codec was run)")
    return lines


def _legend_label(entry: dict) -> str:
    """A codec's label, with its model and refinement steps when the run recorded them."""
    settings = entry.get("settings", {})
    extra = [str(settings["model_id"])] if settings.get("model_id") else []
    if settings.get("refine_steps"):
        extra.append(f"refine {settings['refine_steps']}")
    return f"{entry['label']} ({', '.join(extra)})" if extra else entry["label"]


def plot(results: dict, path: Path) -> Path:
    """PNG with two panels against bpp: mean PSNR, and MS-SSIM in dB (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_psnr, ax_ms) = plt.subplots(1, 2, figsize=(13, 5.2))
    lo, hi = results["bd_rate"]["range_db"]
    ax_psnr.axhspan(lo, hi, color="0.93", zorder=0, label=f"BD range {lo:g}-{hi:g} dB")
    for name, entry in results["codecs"].items():
        pts = sorted(entry["points"], key=lambda p: p["bpp"])
        bpp = [p["bpp"] for p in pts]
        style = {"marker": "o", "ms": 4, "lw": 1.6} if name == "fastcodec" else \
            {"marker": ".", "ms": 5, "lw": 1.0}
        label = _legend_label(entry)
        ax_psnr.plot(bpp, [p["psnr"] for p in pts], label=label, **style)
        ax_ms.plot(bpp, [p["ms_ssim_db"] for p in pts], label=label, **style)
    n = len(results["images"])
    for ax, ylabel in ((ax_psnr, "RGB PSNR, dB (mean over images)"),
                       (ax_ms, "MS-SSIM, dB: -10 log10(1 - MS-SSIM)")):
        ax.set_xlabel("bits per pixel (mean over images)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle(f"Rate-distortion on {n} image{'s' if n != 1 else ''}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
