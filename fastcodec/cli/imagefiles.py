"""The image files of the command: the extensions Pillow reads, reading an input image
(:func:`read_image`) and encoding a decoded one in an output format (:func:`encode_image`)."""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np

#: Formats ``decompress --format`` writes: name -> (Pillow format, file extension).
OUTPUT_FORMATS = {"png": ("PNG", ".png"), "bmp": ("BMP", ".bmp"), "tiff": ("TIFF", ".tiff"),
                  "ppm": ("PPM", ".ppm")}


@lru_cache(maxsize=1)
def image_extensions() -> frozenset:
    """Lower-case file extensions (``".png"``, ...) of every format the installed Pillow reads."""
    from PIL import Image

    Image.init()
    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items()
                     if fmt in Image.OPEN)


def read_image(path: Path, *, convert: bool = False) -> tuple[np.ndarray, str]:
    """An image file as ``(uint8 numpy array in its own layout, layout)``: HxWx3 ``"rgb"`` or
    HxW ``"gray"``, validated and converted as :func:`fastcodec.images.to_rgb_uint8` does
    (``convert``: RGBA, 16-bit, palette and other modes are converted instead of refused).
    EXIF orientation is applied, so the image is coded the way viewers show it."""
    from fastcodec.images import from_rgb_uint8, open_image_file, to_rgb_uint8

    try:
        with open_image_file(path, convert=convert) as im:
            rgb, layout = to_rgb_uint8(im, convert=convert)
    except (ValueError, TypeError) as exc:
        text = str(exc)
        if convert or "--convert" in text:
            raise
        hint = "pass convert=True"
        text = text.replace(hint, "pass --convert") if hint in text else \
            f"{text} (--convert converts it)"
        raise (TypeError if isinstance(exc, TypeError) else ValueError)(text) from None
    return from_rgb_uint8(rgb, layout), layout


def encode_image(image: np.ndarray, fmt: str) -> bytes:
    """uint8 HxWx3 / HxW / HxWx1 -> the bytes of an image file in ``fmt`` (see OUTPUT_FORMATS)."""
    from PIL import Image

    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format=OUTPUT_FORMATS[fmt][0])
    return buf.getvalue()
