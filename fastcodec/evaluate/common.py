"""Defaults, codec names and labels, and the error type shared by the ``fastcodec eval``
modules."""

from __future__ import annotations

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
