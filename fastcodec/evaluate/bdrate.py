"""Bjøntegaard delta rates of every codec against the reference, over the curves' overlap and
over a fixed PSNR range."""

from __future__ import annotations

from fastcodec import metrics
from fastcodec.evaluate.common import BD_RANGE, LABELS, REFERENCE


def bd_rates(codecs: dict, reference: str = REFERENCE,
             bd_range: tuple[float, float] = BD_RANGE) -> dict:
    """BD-rate (PSNR vs mean bpp) of every codec against ``reference``, over the overlap of the
    two curves and over ``bd_range``; an entry that cannot be computed holds ``"error"``."""
    range_key = f"{bd_range[0]:g}-{bd_range[1]:g} dB"
    out = {"reference": reference, "metric": "mean RGB PSNR (dB) vs mean bpp",
           "range_db": list(bd_range), "range_key": range_key, "codecs": {}}
    if reference not in codecs:
        out["note"] = f"no BD-rates: the reference {LABELS.get(reference, reference)} was not run"
        return out
    ref = codecs[reference]["points"]
    for name, entry in codecs.items():
        if name == reference:
            continue
        row = {}
        for key, psnr_range in (("overlap", None), (range_key, bd_range)):
            try:
                row[key] = metrics.bd_rate_details(
                    [p["bpp"] for p in ref], [p["psnr"] for p in ref],
                    [p["bpp"] for p in entry["points"]], [p["psnr"] for p in entry["points"]],
                    psnr_range=psnr_range).as_dict()
            except ValueError as exc:
                row[key] = {"error": str(exc)}
        out["codecs"][name] = row
    return out
