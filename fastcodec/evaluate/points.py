"""Points of a rate-distortion curve: every image of one setting coded, decoded and scored,
for an anchor or for fastcodec."""

from __future__ import annotations

import time
from typing import Callable, Optional, Sequence

import numpy as np

from fastcodec import metrics
from fastcodec.evaluate.anchors import anchor_decode, anchor_encode
from fastcodec.evaluate.common import LABELS, EvalError


def _score(rgb: np.ndarray, decoded: np.ndarray, blob_bytes: int, name: str) -> dict:
    if decoded.shape != rgb.shape or decoded.dtype != np.uint8:
        raise RuntimeError(f"{name}: decoded image is {decoded.dtype} {decoded.shape}, "
                           f"expected uint8 {rgb.shape}")
    pixels = rgb.shape[0] * rgb.shape[1]
    return {
        "image": name,
        "bytes": int(blob_bytes),
        "bpp": 8.0 * blob_bytes / pixels,
        "psnr": metrics.psnr(rgb, decoded),
        "ms_ssim": metrics.ms_ssim(rgb, decoded),
    }


#: Per-image PSNR cap (dB) in the means: one losslessly reproduced image (PSNR inf) would make a
#: point's mean infinite and every BD-rate unavailable. The per-image values stay uncapped.
PSNR_CAP_DB = 100.0


def _point(setting: dict, per_image: list[dict], encode_s: float, decode_s: float) -> dict:
    ms = float(np.mean([r["ms_ssim"] for r in per_image]))
    return {
        **setting,
        "bpp": float(np.mean([r["bpp"] for r in per_image])),
        "psnr": float(np.mean([min(r["psnr"], PSNR_CAP_DB) for r in per_image])),
        "ms_ssim": ms,
        "ms_ssim_db": metrics.ms_ssim_db(min(max(ms, 0.0), 1.0)),
        "bytes": int(sum(r["bytes"] for r in per_image)),
        "encode_s": encode_s,
        "decode_s": decode_s,
        "per_image": per_image,
    }


def _describe(point: dict) -> str:
    return f"{point['bpp']:.4f} bpp, {point['psnr']:.2f} dB, MS-SSIM {point['ms_ssim']:.4f}"


def run_anchor(name: str, images: list[tuple[str, np.ndarray]], qualities: Sequence[int],
               settings: dict, progress: Callable[[str], None]) -> list[dict]:
    """One point per quality: every image encoded, decoded and scored."""
    points = []
    for i, q in enumerate(qualities):
        per_image, enc_s, dec_s = [], 0.0, 0.0
        for image_name, rgb in images:
            t0 = time.perf_counter()
            blob = anchor_encode(name, rgb, q, settings)
            t1 = time.perf_counter()
            decoded = anchor_decode(blob)
            t2 = time.perf_counter()
            enc_s, dec_s = enc_s + t1 - t0, dec_s + t2 - t1
            per_image.append(_score(rgb, decoded, len(blob), image_name))
        points.append(_point({"quality": int(q)}, per_image, enc_s, dec_s))
        progress(f"{LABELS[name]} q={q} [{i + 1}/{len(qualities)}]: {_describe(points[-1])} "
                 f"(enc {enc_s:.2f} s, dec {dec_s:.2f} s)")
    return points


def run_fastcodec(images: list[tuple[str, np.ndarray]], qualities: Sequence[float], device,
                  model: Optional[str], progress: Callable[[str], None],
                  refine_steps: int = 0) -> tuple[list[dict], dict]:
    """One point per quality with ``fastcodec.Codec(quality, device,
    refine_steps=refine_steps)``; all images of a quality go through one ``compress`` and one
    ``decompress`` call (timed). Before the first quality, one image is coded once untimed
    (warm-up: model load, kernel selection)."""
    try:
        from fastcodec import Codec
    except ImportError as exc:
        raise EvalError(f"fastcodec.Codec is not available ({exc}); use --anchors-only") from None
    kwargs = {} if model is None else {"model": model}
    if refine_steps:
        kwargs["refine_steps"] = refine_steps
    rgbs = [rgb for _, rgb in images]
    points, info = [], {}
    for i, q in enumerate(qualities):
        try:
            codec = Codec(q, device, **kwargs)
        except (ValueError, RuntimeError) as exc:  # bad quality, model or device
            raise EvalError(f"fastcodec quality {q:g}: {exc}") from None
        if i == 0:
            codec.decompress(codec.compress(rgbs[:1]))
            info = {"device": str(getattr(codec, "device", device)),
                    "refine_steps": int(refine_steps)}
        t0 = time.perf_counter()
        blobs = codec.compress(rgbs)
        t1 = time.perf_counter()
        decoded = codec.decompress(blobs)
        t2 = time.perf_counter()
        if len(blobs) != len(rgbs) or len(decoded) != len(rgbs):
            raise RuntimeError(f"fastcodec q={q}: {len(rgbs)} images gave {len(blobs)} blobs "
                               f"and {len(decoded)} decoded images")
        per_image = [_score(rgb, np.asarray(dec), len(blob), image_name)
                     for (image_name, rgb), blob, dec in zip(images, blobs, decoded)]
        setting = {"quality": float(getattr(codec, "quality", q))}  # snapped to the grid
        if setting["quality"] != float(q):
            setting["requested_quality"] = float(q)
        points.append(_point(setting, per_image, t1 - t0, t2 - t1))
        progress(f"fastcodec q={q:g} [{i + 1}/{len(qualities)}]: {_describe(points[-1])} "
                 f"(enc {t1 - t0:.2f} s, dec {t2 - t1:.2f} s)")
    return points, info
