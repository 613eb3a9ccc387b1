"""How a training run's validation curve moves: BD-rate against a reference curve, and the top
quality's PSNR with the transforms' ceiling, per validation step (a PNG; the figures are
printed too).

    python training/plot_val_progress.py training/codec-v6/log.jsonl \
        --reference training/codec-v5/log.jsonl -o training/codec-v6/val_progress.png

Each log is a ``log.jsonl`` of ``fastcodec train``; its ``"event": "val"`` lines hold the bpp
and PSNR of every quality on the validation crops. The reference curve is the last validation
of ``--reference`` (``LOG:STEP`` picks the one at that step). Negative BD-rate: fewer bits
than the reference at equal PSNR.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import List, Optional, Tuple


def read_val(path) -> List[dict]:
    """The validation events of a ``log.jsonl``, in file order."""
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                event = json.loads(line)
                if event.get("event") == "val":
                    out.append(event)
    return out


def reference_curve(spec: str) -> Tuple[dict, str]:
    """The validation event ``LOG`` (its last) or ``LOG:STEP`` names, and a label for it."""
    head, sep, tail = spec.rpartition(":")
    path, step = (head, tail) if sep and tail.isdigit() else (spec, "")
    events = read_val(path)
    if not events:
        raise ValueError(f"{path} has no validation lines")
    if step:
        match = [e for e in events if int(e["step"]) == int(step)]
        if not match:
            raise ValueError(f"{path} has no validation at step {step}")
        event = match[-1]
    else:
        event = events[-1]
    return event, f"{Path(path).parent.name} step {event['step']}"


def progress(events: List[dict], ref: dict) -> List[dict]:
    """Per validation event: step, BD-rate (%) against ``ref``, top PSNR and ceiling (dB)."""
    from fastcodec.metrics import bd_rate

    rows = []
    for e in events:
        try:
            bd: Optional[float] = bd_rate(ref["bpp"], ref["psnr"], e["bpp"], e["psnr"])
        except ValueError:
            bd = None  # e.g. too few distinct points
        rows.append({"step": int(e["step"]), "bd_rate": bd, "top_psnr": e["psnr"][-1],
                     "ceiling": e.get("psnr_ceiling")})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("logs", nargs="+", help="log.jsonl files of training runs")
    p.add_argument("--reference", required=True, help="LOG or LOG:STEP of the reference curve")
    p.add_argument("-o", "--out", default="val_progress.png")
    args = p.parse_args(argv)

    ref, ref_label = reference_curve(args.reference)
    runs = {str(Path(log).parent.name) or log: progress(read_val(log), ref) for log in args.logs}
    for name, rows in runs.items():
        for r in rows:
            bd = "n/a" if r["bd_rate"] is None else f"{r['bd_rate']:+.2f}%"
            print(f"{name} step {r['step']:>7}: BD-rate vs {ref_label} {bd}, top "
                  f"{r['top_psnr']:.3f} dB, ceiling {r['ceiling']}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_bd, ax_top) = plt.subplots(1, 2, figsize=(11, 4))
    for name, rows in runs.items():
        steps = [r["step"] for r in rows if r["bd_rate"] is not None]
        ax_bd.plot(steps, [r["bd_rate"] for r in rows if r["bd_rate"] is not None], "o-",
                   label=name)
        line, = ax_top.plot([r["step"] for r in rows], [r["top_psnr"] for r in rows], "o-",
                            label=f"{name}: top quality")
        ceil = [(r["step"], r["ceiling"]) for r in rows if r["ceiling"] is not None]
        if ceil:
            ax_top.plot(*zip(*ceil), "--", color=line.get_color(),
                        label=f"{name}: unquantized ceiling")
    ax_bd.axhline(0.0, color="gray", lw=0.8)
    ax_bd.set(xlabel="step", ylabel=f"BD-rate vs {ref_label} (%)",
              title="validation BD-rate (negative = fewer bits)")
    ax_top.axhline(ref["psnr"][-1], color="gray", lw=0.8, label=f"{ref_label}: top quality")
    ax_top.set(xlabel="step", ylabel="PSNR (dB)", title="top quality and ceiling")
    for ax in (ax_bd, ax_top):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
