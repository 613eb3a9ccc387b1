"""``fastcodec eval``: rate-distortion evaluation of fastcodec against Pillow's JPEG, WebP and AVIF.

For every image (RGB, 8 bits) and every setting of every codec, the image is encoded, the real
encoded bytes give the rate (``bpp = 8 * bytes / (height * width)``, headers included), and the
decoded RGB image is scored against the original: RGB PSNR (:func:`fastcodec.metrics.psnr`, MSE
over all pixels and channels, per image) and MS-SSIM (:func:`fastcodec.metrics.ms_ssim`). A
*point* of a curve is one setting: mean bpp, mean PSNR and mean MS-SSIM over the images, plus
the total encode and decode seconds.

* fastcodec: one point per public quality (``fastcodec.Codec(quality, device)``).
* anchors, through Pillow: JPEG (baseline, 4:2:0, standard Huffman tables), WebP (lossy,
  method 4), AVIF (libavif via Pillow >= 11.3, 4:2:0, speed :data:`AVIF_SPEED`), each over a
  quality sweep (:data:`ANCHOR_QUALITIES`); an anchor Pillow cannot write is skipped with a note.

Bjøntegaard delta rates of every codec against JPEG (PSNR vs mean bpp,
:func:`fastcodec.metrics.bd_rate_details`) are given over the overlap of the two curves and over
:data:`BD_RANGE` (26-38 dB), with a flag where a curve had to be extrapolated to cover it.

Outputs (``--out``, default ``./fastcodec-eval``): ``results.json`` (every point with its
per-image values, the BD-rates, the images and the environment) and ``rd.png`` (PSNR and MS-SSIM
in dB, ``-10 log10(1 - MS-SSIM)``, against bpp); the table and the BD-rate summary are printed.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from fastcodec import metrics
from fastcodec.bench.machine import cpu_model, package_version

#: Public fastcodec qualities evaluated by default.
DEFAULT_QUALITIES = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
#: Anchors, in the order they are run and shown.
ANCHORS = ("jpeg", "webp", "avif")
#: Default quality sweeps of the anchors (Pillow's ``quality`` argument). On the 24 Kodak images
#: they span 23.9-40.6 dB (JPEG), 25.9-41.8 dB (WebP: its q=5 is already 28.3 dB, hence q=0)
#: and 25.8-41.3 dB (AVIF), so the 26-38 dB BD range is measured, not extrapolated.
ANCHOR_QUALITIES = {
    "jpeg": tuple(range(5, 100, 5)),
    "webp": tuple(range(0, 100, 5)),
    "avif": tuple(range(5, 95, 5)),
}
#: libavif encoder speed (0 slowest/best .. 10 fastest): 6 (Pillow's default) keeps a Kodak sweep
#: to a few minutes on two cores.
AVIF_SPEED = 6
#: The codec the BD-rates are measured against.
REFERENCE = "jpeg"
#: The fixed BD-rate PSNR interval, dB.
BD_RANGE = (26.0, 38.0)
#: Image files a folder argument contributes.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
RESULTS_FORMAT = "fastcodec-eval/1"
LABELS = {"fastcodec": "fastcodec", "jpeg": "JPEG", "webp": "WebP", "avif": "AVIF"}


class EvalError(RuntimeError):
    """A usage problem reported as one line (exit status 2)."""


# --------------------------------------------------------------------------------------------
# images


def collect_images(inputs: Sequence, max_images: Optional[int] = None) -> list[Path]:
    """Image paths from files and folders (a folder gives its files with an image suffix,
    sorted by name, not recursive); the first ``max_images`` of them when given."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir()
                           if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise EvalError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {p}")
            paths.extend(found)
        elif p.is_file():
            paths.append(p)
        else:
            raise EvalError(f"no such file or folder: {p}")
    if max_images is not None:
        if max_images < 1:
            raise EvalError(f"--max-images must be >= 1, got {max_images}")
        paths = paths[:max_images]
    if not paths:
        raise EvalError("no images to evaluate")
    return paths


def load_rgb(path: Path) -> np.ndarray:
    """An image file as RGB uint8 [H, W, 3] (Pillow's ``convert("RGB")``: grey is replicated,
    alpha dropped)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            rgb = np.ascontiguousarray(np.asarray(im.convert("RGB")))
    except (OSError, ValueError) as exc:  # unreadable, truncated, not an image
        raise EvalError(f"cannot read {path}: {exc}") from None
    if min(rgb.shape[:2]) < metrics.WINDOW_SIZE:
        raise EvalError(f"{path}: {rgb.shape[1]}x{rgb.shape[0]} is too small: MS-SSIM needs "
                        f">= {metrics.WINDOW_SIZE} px on each side")
    return rgb


# --------------------------------------------------------------------------------------------
# anchors


def anchor_available(name: str) -> Optional[str]:
    """None when Pillow can write and read this anchor, else the reason it cannot."""
    from PIL import features

    feature = {"jpeg": "jpg", "webp": "webp", "avif": "avif"}[name]
    try:
        ok = features.check(feature)
    except ValueError:  # a Pillow too old to know the feature
        ok = False
    if not ok:
        return f"this Pillow ({package_version('Pillow')}) was built without {LABELS[name]} support"
    return None


def anchor_settings(name: str, avif_speed: int = AVIF_SPEED) -> dict:
    """The fixed encoder options of an anchor (besides its quality), as recorded in the JSON."""
    if name == "jpeg":
        return {"subsampling": "4:2:0", "optimize": False, "progressive": False}
    if name == "webp":
        return {"lossless": False, "method": 4}
    if name == "avif":
        return {"subsampling": "4:2:0", "speed": avif_speed, "range": "full"}
    raise EvalError(f"unknown anchor {name!r}; choose from {', '.join(ANCHORS)}")


def anchor_encode(name: str, rgb: np.ndarray, quality: int, settings: dict) -> bytes:
    """Encodes RGB uint8 [H, W, 3] with Pillow; returns the file bytes."""
    from PIL import Image

    buf = io.BytesIO()
    im = Image.fromarray(rgb, "RGB")
    if name == "jpeg":
        im.save(buf, "JPEG", quality=int(quality), **settings)
    elif name == "webp":
        im.save(buf, "WEBP", quality=int(quality), **settings)
    elif name == "avif":
        im.save(buf, "AVIF", quality=int(quality), **settings)
    else:
        raise EvalError(f"unknown anchor {name!r}")
    return buf.getvalue()


def anchor_decode(blob: bytes) -> np.ndarray:
    """Decodes a JPEG/WebP/AVIF file to RGB uint8 [H, W, 3]."""
    from PIL import Image

    with Image.open(io.BytesIO(blob)) as im:
        return np.asarray(im.convert("RGB"))


# --------------------------------------------------------------------------------------------
# points


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


# --------------------------------------------------------------------------------------------
# BD-rates


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


# --------------------------------------------------------------------------------------------
# the whole evaluation


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


# --------------------------------------------------------------------------------------------
# outputs


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


# --------------------------------------------------------------------------------------------
# command line


def _parse_list(text: str, kind, what: str) -> list:
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        return [kind(t) for t in items]
    except ValueError:
        raise EvalError(f"{what}: expected a comma-separated list of numbers, got {text!r}") from None


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from fastcodec.cli import refine_steps_arg  # the same --refine as `fastcodec compress`

    """Adds the options of ``fastcodec eval`` to ``parser`` (the subcommand's parser)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = ("Rate-distortion evaluation: fastcodec against Pillow's JPEG, WebP "
                          "and AVIF (bpp from the real encoded bytes, RGB PSNR, MS-SSIM, "
                          f"BD-rate vs JPEG over the curves' overlap and {BD_RANGE[0]:g}-"
                          f"{BD_RANGE[1]:g} dB).")
    parser.epilog = (
        "examples:\n"
        "  fastcodec eval                                  # the bundled samples\n"
        "  fastcodec eval ~/data/kodak --device cuda\n"
        "  fastcodec eval ~/data/kodak --anchors-only      # JPEG/WebP/AVIF only\n"
        "  fastcodec eval imgs/ --qualities 2,4 --anchors jpeg --max-images 4 --json\n"
        "Writes <out>/results.json and <out>/rd.png; progress goes to stderr.")
    parser.add_argument("inputs", nargs="*", metavar="DIR",
                        help="image folders or files (default: the bundled sample images)")
    parser.add_argument("--qualities", default=",".join(f"{q:g}" for q in DEFAULT_QUALITIES),
                        help="fastcodec public qualities, comma-separated, 1..6 (default: "
                             "%(default)s; '' for anchors only)")
    parser.add_argument("--anchors", default=",".join(ANCHORS),
                        help="anchors to run, comma-separated from jpeg,webp,avif "
                             "(default: %(default)s; '' for none)")
    parser.add_argument("--anchors-only", action="store_true",
                        help="run only the anchors (same as --qualities '')")
    for name in ANCHORS:
        parser.add_argument(f"--{name}-qualities", metavar="Q,Q,...",
                            default=",".join(map(str, ANCHOR_QUALITIES[name])),
                            help=f"{LABELS[name]} quality sweep (default: %(default)s)")
    parser.add_argument("--avif-speed", type=int, default=AVIF_SPEED,
                        help="libavif encoder speed 0..10 (default: %(default)s)")
    parser.add_argument("--model", default=None, help="fastcodec model id (default: the zoo's)")
    parser.add_argument("--refine", type=refine_steps_arg, default=0, metavar="STEPS",
                        help="fastcodec's encoder-side latent refinement steps per image "
                             "(default 0: off; each step costs about 4 decodes)")
    parser.add_argument("--device", default=None,
                        help="device for fastcodec (default: the Codec's choice)")
    parser.add_argument("--max-images", type=int, default=None, metavar="N",
                        help="evaluate only the first N images")
    parser.add_argument("-o", "--out", default="fastcodec-eval",
                        help="output folder for results.json and rd.png (default: %(default)s)")
    parser.add_argument("--no-plot", action="store_true", help="do not write rd.png")
    parser.add_argument("--json", action="store_true",
                        help="print the results JSON on stdout instead of the tables")
    parser.set_defaults(run=run)
    return parser


def build_parser() -> argparse.ArgumentParser:
    return configure_parser(argparse.ArgumentParser(prog="fastcodec eval"))


def _progress_to_stderr(line: str) -> None:
    print(f"eval: {line}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Runs ``fastcodec eval`` from parsed arguments; returns the exit status."""
    try:
        return _run(args)
    except EvalError as exc:
        print(f"fastcodec eval: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from fastcodec.samples import sample_paths

    qualities = [] if args.anchors_only else _parse_list(args.qualities, float, "--qualities")
    anchors = [a.strip().lower() for a in args.anchors.split(",") if a.strip()]
    sweeps = {name: _parse_list(getattr(args, f"{name}_qualities"), int, f"--{name}-qualities")
              for name in ANCHORS}
    if not 0 <= args.avif_speed <= 10:
        raise EvalError(f"--avif-speed must be in 0..10, got {args.avif_speed}")
    inputs = args.inputs or sample_paths()
    t0 = time.perf_counter()
    results = evaluate(inputs, qualities, anchors, args.device, anchor_qualities=sweeps,
                       avif_speed=args.avif_speed, model=args.model, max_images=args.max_images,
                       progress=_progress_to_stderr, refine_steps=args.refine)
    results["environment"]["seconds"] = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = to_json(results)
    (out / "results.json").write_text(text)
    written = [out / "results.json"]
    if not args.no_plot:
        written.append(plot(results, out / "rd.png"))
    if args.json:
        sys.stdout.write(text)
    else:
        print("\n".join(table_lines(results)))
        print()
        print("\n".join(bd_lines(results)))
        print()
        print("written: " + ", ".join(str(p) for p in written))
    return 0


def main(argv=None) -> int:
    """Entry point for ``python -m fastcodec.evaluate``: ``argv`` after the command name."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
