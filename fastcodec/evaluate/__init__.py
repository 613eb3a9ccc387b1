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

from fastcodec.evaluate.anchors import (anchor_available, anchor_decode, anchor_encode,
                                        anchor_settings)
from fastcodec.evaluate.bdrate import bd_rates
from fastcodec.evaluate.command import build_parser, configure_parser, main, run
from fastcodec.evaluate.common import (ANCHOR_QUALITIES, ANCHORS, AVIF_SPEED, BD_RANGE,
                                      DEFAULT_QUALITIES, IMAGE_SUFFIXES, LABELS, REFERENCE,
                                      RESULTS_FORMAT, EvalError)
from fastcodec.evaluate.evaluation import environment, evaluate
from fastcodec.evaluate.images import collect_images, load_rgb
from fastcodec.evaluate.points import PSNR_CAP_DB, run_anchor, run_fastcodec
from fastcodec.evaluate.report import (MIN_BD_COVERAGE, bd_lines, plot, table_lines,
                                       to_json)

__all__ = [
    "ANCHORS", "ANCHOR_QUALITIES", "AVIF_SPEED", "BD_RANGE", "DEFAULT_QUALITIES",
    "IMAGE_SUFFIXES", "LABELS", "MIN_BD_COVERAGE", "PSNR_CAP_DB", "REFERENCE", "RESULTS_FORMAT",
    "EvalError", "anchor_available", "anchor_decode", "anchor_encode", "anchor_settings",
    "bd_lines", "bd_rates", "build_parser", "collect_images", "configure_parser", "environment",
    "evaluate", "load_rgb", "main", "plot", "run", "run_anchor", "run_fastcodec", "table_lines",
    "to_json",
]
