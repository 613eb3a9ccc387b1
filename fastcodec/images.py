"""Input normalization: every accepted image becomes one contiguous ``uint8 [H, W, 3]`` array plus
a *layout* that says how to give the decoded pixels back.

Accepted without conversion:

* numpy ``uint8`` arrays ``[H, W, 3]`` (layout ``"rgb"``), ``[H, W]`` (``"gray"``) and
  ``[H, W, 1]`` (``"gray1"``);
* PIL images in mode ``RGB`` (``"rgb"``) and ``L`` (``"gray"``);
* torch tensors, ``uint8`` (levels 0..255) or floating point (values in [0, 1], mapped to
  ``round(255 x)``), shaped ``[3, H, W]`` (``"rgb"``), ``[1, H, W]`` (``"gray1"``) or ``[H, W]``
  (``"gray"``); on any device, gradients are ignored. A 4-D tensor is a batch: the caller splits
  it (see :mod:`fastcodec.api`).

Grayscale policy: a gray image is coded as RGB with three equal channels (the codec is an RGB
codec; there is no separate gray model) and decoded back to its own layout by averaging the three
decoded channels and rounding (:func:`from_rgb_uint8`). The stream costs about what the same
image in colour would; the chroma of the reconstruction is discarded.

With ``convert=True`` these are converted instead of rejected: alpha is dropped (RGBA arrays and
tensors ``[..., 4]`` / ``[4, H, W]``, PIL ``RGBA``/``LA``/``PA``), 16-bit data (numpy/PIL
``uint16``, PIL ``I;16*`` and ``I``) is scaled to 8 bits with ``round(v / 257)``, ``bool`` becomes
0/255, numpy floating arrays in [0, 1] are scaled like tensors, other integer arrays with values
in 0..255 are cast, and every other PIL mode goes through ``Image.convert("RGB")``. Empty images,
values out of range and things that are not images are always errors.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

__all__ = ["LAYOUTS", "check_pil_depth", "from_rgb_uint8", "open_image_file", "to_rgb_uint8"]

#: Layouts of the original image: ``rgb`` HxWx3, ``gray`` HxW, ``gray1`` HxWx1.
LAYOUTS = ("rgb", "gray", "gray1")

_HINT = "; pass convert=True to convert it"


def _is_torch_tensor(x) -> bool:
    mod = type(x).__module__
    if not mod.startswith("torch"):
        return False
    import torch

    return isinstance(x, torch.Tensor)


def _is_pil_image(x) -> bool:
    if not type(x).__module__.startswith("PIL"):
        return False
    from PIL import Image

    return isinstance(x, Image.Image)


def _check_not_empty(shape) -> None:
    if any(int(s) == 0 for s in shape):
        raise ValueError(f"image is empty (shape {tuple(shape)})")


def _finalize(hwc: np.ndarray, layout: str) -> Tuple[np.ndarray, str]:
    """``hwc`` uint8 ``[H, W, 1 or 3]`` -> contiguous ``[H, W, 3]``."""
    if hwc.shape[2] == 1:
        hwc = np.repeat(hwc, 3, axis=2)
    return np.ascontiguousarray(hwc), layout


def _layout_of_hwc(shape, what: str) -> str:
    """Layout of an HWC/HW array shape (channels 1, 3, or 4 handled by the caller)."""
    if len(shape) == 2:
        return "gray"
    if len(shape) == 3 and shape[2] in (1, 3):
        return "gray1" if shape[2] == 1 else "rgb"
    raise ValueError(
        f"{what} must be [H, W], [H, W, 1] or [H, W, 3], got shape {tuple(shape)}"
    )


def _levels(arr: np.ndarray, convert: bool, floats_ok: bool, what: str) -> np.ndarray:
    """Any numeric array -> uint8 levels of the same shape (rules in the module docstring)."""
    dt = arr.dtype
    if dt == np.uint8:
        return arr
    if dt == np.bool_:
        if not convert:
            raise TypeError(f"{what} is boolean; images must be uint8 levels{_HINT} (0/255)")
        return arr.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(dt, np.floating):
        if not (floats_ok or convert):
            raise TypeError(
                f"{what} has dtype {dt}; numpy images must be uint8 (pass convert=True to map "
                "floats in [0, 1] to 0..255)"
            )
        a = arr.astype(np.float32)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{what} holds NaN or infinite values")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"{what} holds floats outside [0, 1] (min {lo:g}, max {hi:g}); "
                             "floating-point images must be in [0, 1]")
        return np.rint(a * 255.0).astype(np.uint8)
    if dt.kind == "u" and dt.itemsize == 2:  # either byte order
        if not convert:
            raise ValueError(f"{what} is 16-bit (uint16); the codec takes 8-bit images{_HINT} "
                             "(scaled with round(v / 257))")
        return ((arr.astype(np.uint32) * 2 + 257) // 514).astype(np.uint8)
    if np.issubdtype(dt, np.integer):
        if not convert:
            raise TypeError(f"{what} has dtype {dt}; images must be uint8{_HINT} "
                            "(values must then lie in 0..255)")
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise ValueError(f"{what} has dtype {dt} with values in {lo}..{hi}, outside 0..255")
        return arr.astype(np.uint8)
    raise TypeError(f"{what} has dtype {dt}, which is not an image dtype")


def _from_hwc(arr: np.ndarray, convert: bool, floats_ok: bool, what: str):
    """numpy HW / HWC (C in 1, 3, 4) -> (uint8 HxWx3, layout)."""
    if arr.ndim not in (2, 3):
        raise ValueError(f"{what} must be 2-D or 3-D (one image), got shape {arr.shape}")
    _check_not_empty(arr.shape)
    if arr.ndim == 3 and arr.shape[2] == 4:
        if not convert:
            raise ValueError(f"{what} has 4 channels (RGBA?); the codec takes RGB or gray{_HINT} "
                             "(the alpha channel is dropped)")
        arr = arr[:, :, :3]
    layout = _layout_of_hwc(arr.shape, what)
    levels = _levels(arr, convert, floats_ok, what)
    if levels.ndim == 2:
        levels = levels[:, :, None]
    return _finalize(levels, layout)


def check_pil_depth(img, convert: bool) -> None:
    """Refuses (ValueError, unless ``convert``) a PIL image opened from a file of 16-bit RGB
    samples and not loaded yet: Pillow has no 16-bit RGB mode and loads such files as mode
    ``"RGB"``, keeping the high byte of each sample. Once loaded, the depth is not known."""
    for tile in getattr(img, "tile", None) or ():
        args = tile[3] if len(tile) > 3 else None
        raw = args if isinstance(args, str) else (args[0] if isinstance(args, tuple) and args
                                                  else None)
        if img.mode == "RGB" and isinstance(raw, str) and ";16" in raw and not convert:
            raise ValueError(f"PIL image with 16-bit RGB samples ({raw}); the codec takes 8-bit "
                             f"images{_HINT} (Pillow keeps the high byte of each sample)")


def open_image_file(fp, *, convert: bool = False):
    """An image file (path or binary file object) as a loaded PIL image, turned as its EXIF
    orientation says (the way viewers show it). 16-bit RGB files raise ValueError unless
    ``convert`` (:func:`check_pil_depth`); Pillow's own errors (unknown format, truncated data)
    pass through. The command line and the Ray workers read files with this."""
    from PIL import Image, ImageOps

    image = Image.open(fp)
    try:
        check_pil_depth(image, convert)  # before loading: afterwards the depth is unknown
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
    except BaseException:
        image.close()
        raise
    return image


def _from_pil(img, convert: bool):
    mode = img.mode
    if mode == "RGB":
        check_pil_depth(img, convert)
        return _finalize(np.asarray(img, dtype=np.uint8), "rgb")
    if mode == "L":
        return _finalize(np.asarray(img, dtype=np.uint8)[:, :, None], "gray")
    if not convert:
        raise ValueError(f"PIL image in mode {mode!r}; the codec takes modes 'RGB' and 'L'{_HINT}")
    if img.width == 0 or img.height == 0:
        _check_not_empty((img.height, img.width))
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img).astype(np.int64)
        if arr.ndim != 2:
            raise ValueError(f"PIL image in mode {mode!r} has unexpected shape {arr.shape}")
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 65535:  # mode "I" holds 32-bit ints
            raise ValueError(f"PIL image in mode {mode!r} has values in {lo}..{hi}, outside the "
                             "16-bit range 0..65535")
        arr = arr.astype(np.uint16)
        return _from_hwc(arr, True, False, f"PIL image in mode {mode!r}")
    if mode == "LA":
        return _finalize(np.asarray(img.getchannel("L"), dtype=np.uint8)[:, :, None], "gray")
    return _finalize(np.asarray(img.convert("RGB"), dtype=np.uint8), "rgb")


def _from_torch(t, convert: bool):
    import torch

    t = t.detach()
    if t.dim() not in (2, 3):
        raise ValueError(f"torch image must be [C, H, W] or [H, W], got shape {tuple(t.shape)}"
                         " (a 4-D tensor is a batch: pass it to compress as is)")
    _check_not_empty(t.shape)
    if t.dim() == 3 and t.shape[0] not in (1, 3, 4):
        hint = ("; it looks like [H, W, C]: use .permute(2, 0, 1)"
                if t.shape[-1] in (1, 3, 4) else "")
        raise ValueError(f"torch image must be [C, H, W] with C = 1 or 3, got shape "
                         f"{tuple(t.shape)}{hint}")
    if t.is_complex():
        raise TypeError(f"torch image has complex dtype {t.dtype}")
    if t.is_floating_point() and t.dtype != torch.float64:
        t = t.to(torch.float32)
    arr = t.cpu().numpy()
    if arr.ndim == 3:
        arr = np.moveaxis(arr, 0, -1)
    return _from_hwc(arr, convert, True, "torch image")


def to_rgb_uint8(image, *, convert: bool = False) -> Tuple[np.ndarray, str]:
    """One image -> (contiguous ``uint8 [H, W, 3]``, layout in :data:`LAYOUTS`).

    See the module docstring for what is accepted. Raises TypeError for things that are not
    images or have an unsupported dtype, ValueError for bad shapes, empty images, values out of
    range, and RGBA / 16-bit / other PIL modes unless ``convert=True``."""
    if isinstance(image, np.ndarray):
        return _from_hwc(image, convert, False, "numpy image")
    if _is_pil_image(image):
        return _from_pil(image, convert)
    if _is_torch_tensor(image):
        return _from_torch(image, convert)
    raise TypeError(
        f"expected an image (numpy uint8 array, PIL image or torch tensor), got "
        f"{type(image).__module__}.{type(image).__qualname__}"
    )


def from_rgb_uint8(rgb: np.ndarray, layout: str, output: str = "numpy"):
    """Decoded ``uint8 [H, W, 3]`` -> the original layout.

    ``output="numpy"``: uint8 ``[H, W, 3]`` (rgb), ``[H, W]`` (gray), ``[H, W, 1]`` (gray1).
    ``output="torch"``: float32 in [0, 1] holding the same levels (``v / 255``), ``[3, H, W]``
    (rgb), ``[1, H, W]`` (gray1) or ``[H, W]`` (gray). Gray is the rounded mean of the three
    channels."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if output not in ("numpy", "torch"):
        raise ValueError(f"output must be 'numpy' or 'torch', got {output!r}")
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected uint8 [H, W, 3], got {rgb.dtype} {rgb.shape}")
    if layout == "rgb":
        out = rgb
    else:
        gray = ((rgb.astype(np.uint16).sum(axis=2) + 1) // 3).astype(np.uint8)
        out = gray if layout == "gray" else gray[:, :, None]
    out = np.ascontiguousarray(out)
    if output == "numpy":
        return out
    import torch

    t = torch.from_numpy(out)
    if t.dim() == 3:
        t = t.permute(2, 0, 1).contiguous()
    return t.to(torch.float32).div_(255.0)
