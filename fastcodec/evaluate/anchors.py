"""The anchors: Pillow's JPEG, WebP and AVIF (availability, fixed settings, encode, decode)."""

from __future__ import annotations

import io
from typing import Optional

import numpy as np

from fastcodec.bench.machine import package_version
from fastcodec.evaluate.common import ANCHORS, AVIF_SPEED, LABELS, EvalError


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
