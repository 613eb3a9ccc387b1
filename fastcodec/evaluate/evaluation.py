"""The whole evaluation: images, fastcodec and anchor curves, BD-rates and the environment, as
the results dict (the content of ``results.json``)."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
from typing import Callable, Optional, Sequence

import numpy as np

from fastcodec import metrics
from fastcodec.bench.machine import cpu_model, package_version
from fastcodec.evaluate.anchors import anchor_available, anchor_settings
from fastcodec.evaluate.bdrate import bd_rates
from fastcodec.evaluate.common import (ANCHOR_QUALITIES, ANCHORS, AVIF_SPEED, BD_RANGE,
                                      DEFAULT_QUALITIES, LABELS, REFERENCE, RESULTS_FORMAT,
                                      EvalError)
from fastcodec.evaluate.images import collect_images, load_rgb
from fastcodec.evaluate.points import PSNR_CAP_DB, run_anchor, run_fastcodec


def environment() -> dict:
    """Library versions (Python packages and Pillow's codec libraries), machine and date."""
    from PIL import features

    import fastcodec

    codec_libs = {}
    for feature in ("libjpeg_turbo", "webp", "avif"):
        try:
            codec_libs[feature] = features.version(feature)
        except ValueError:
            codec_libs[feature] = None
    try:
        from PIL import _avif

        codec_libs["avif_codecs"] = _avif.codec_versions()
    except ImportError:
        pass
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "fastcodec": getattr(fastcodec, "__version__", None),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "versions": {d: package_version(d) for d in ("torch", "numpy", "Pillow", "matplotlib")},
        "pillow_codecs": codec_libs,
        "command": " ".join(sys.argv),
    }


def _model_info(model: Optional[str]) -> dict:
    """Shipped-model facts for the record (empty when the zoo cannot tell)."""
    try:
        from fastcodec import zoo

        shipped = zoo.load_model(model or zoo.DEFAULT_MODEL)
    except Exception as exc:  # noqa: BLE001 -- only recorded, the codec run reports real errors
        return {"error": f"{type(exc).__name__}: {exc}"}
    meta = {k: v for k, v in dict(getattr(shipped, "metadata", {}) or {}).items()
            if isinstance(v, (str, int, float, bool)) or v is None}
    return {"model_id": shipped.model_id, "weights_hash": bytes(shipped.weights_hash).hex(),
            "qualities": list(shipped.qualities), "metadata": meta}


def evaluate(paths: Sequence, qualities: Sequence[float] = DEFAULT_QUALITIES,
             anchors: Sequence[str] = ANCHORS, device=None, *,
             anchor_qualities: Optional[dict] = None, avif_speed: int = AVIF_SPEED,
             model: Optional[str] = None, max_images: Optional[int] = None,
             bd_range: tuple[float, float] = BD_RANGE,
             progress: Optional[Callable[[str], None]] = None, refine_steps: int = 0) -> dict:
    """Runs the evaluation and returns the results (the content of ``results.json``).

    ``paths``: image files and/or folders (:func:`collect_images`). ``qualities``: fastcodec's
    public qualities (empty: anchors only). ``anchors``: a subset of :data:`ANCHORS`, each swept
    over ``anchor_qualities[name]`` (default :data:`ANCHOR_QUALITIES`). ``progress``: called with
    one line per finished point (e.g. a print to stderr). ``refine_steps``: fastcodec's
    encoder-side latent refinement (:mod:`fastcodec.refine`; 0: off).

    Result: ``{"format", "environment", "images": [{name, path, height, width,
    ms_ssim_scales}],
    "codecs": {name: {"label", "settings", "points": [{quality, bpp, psnr, ms_ssim, ms_ssim_db,
    bytes, encode_s, decode_s, per_image: [{image, bytes, bpp, psnr, ms_ssim}]}]}},
    "skipped": {name: reason}, "bd_rate": bd_rates(...)}``. Points are in the order run
    (increasing quality).
    """
    progress = progress or (lambda line: None)
    unknown = [a for a in anchors if a not in ANCHORS]
    if unknown:
        raise EvalError(f"unknown anchor(s) {', '.join(map(repr, unknown))}; choose from "
                        f"{', '.join(ANCHORS)}")
    sweeps = dict(ANCHOR_QUALITIES, **(anchor_qualities or {}))
    for name in anchors:
        if not sweeps[name]:
            raise EvalError(f"empty quality sweep for {name}")
        bad = [q for q in sweeps[name] if not (isinstance(q, (int, np.integer)) and 0 <= q <= 100)]
        if bad:
            raise EvalError(f"{name} qualities must be integers 0..100, got {bad}")
    if not qualities and not anchors:
        raise EvalError("nothing to evaluate: no fastcodec qualities and no anchors")

    files = collect_images(paths, max_images)
    images, image_records = [], []
    for f in files:
        rgb = load_rgb(f)
        images.append((f.name, rgb))
        image_records.append({"name": f.name, "path": str(f.resolve()),
                              "height": int(rgb.shape[0]), "width": int(rgb.shape[1]),
                              "ms_ssim_scales": metrics.ms_ssim_scales(*rgb.shape[:2])})
    progress(f"{len(images)} image(s), "
             f"{sum(r['height'] * r['width'] for r in image_records) / 1e6:.2f} MP")

    codecs, skipped = {}, {}
    if qualities:
        points, info = run_fastcodec(images, list(qualities), device, model, progress,
                                     refine_steps)
        codecs["fastcodec"] = {"label": LABELS["fastcodec"],
                               "settings": {**info, **_model_info(model)}, "points": points}
    for name in anchors:
        reason = anchor_available(name)
        if reason:
            skipped[name] = reason
            progress(f"{LABELS[name]} skipped: {reason}")
            continue
        settings = anchor_settings(name, avif_speed)
        codecs[name] = {"label": LABELS[name], "settings": settings,
                        "points": run_anchor(name, images, list(sweeps[name]), settings,
                                             progress)}
    return {
        "format": RESULTS_FORMAT,
        "environment": environment(),
        "images": image_records,
        "psnr": "RGB PSNR per image (peak 255, MSE over all pixels and channels), then the mean "
                f"(an identical image counts as {PSNR_CAP_DB:g} dB there)",
        "ms_ssim": "per-channel MS-SSIM averaged over channels, per image, then the mean; "
                   "ms_ssim_db = -10 log10(1 - mean MS-SSIM)",
        "codecs": codecs,
        "skipped": skipped,
        "bd_rate": bd_rates(codecs, REFERENCE, bd_range),
    }
