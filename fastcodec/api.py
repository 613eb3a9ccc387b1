"""The Python API: compress images to ``.fcc`` blobs and back.

Example::

    import fastcodec
    blobs = fastcodec.compress([image_a, image_b], quality=4)      # list of bytes
    images = fastcodec.decompress(blobs)                           # list of uint8 arrays

Inputs (see :mod:`fastcodec.images`): numpy uint8 ``[H, W, 3]`` / ``[H, W]`` / ``[H, W, 1]``,
PIL ``RGB`` / ``L`` images, torch ``[C, H, W]`` uint8 or float in [0, 1]; a 4-D torch tensor
``[N, C, H, W]`` (or numpy ``[N, H, W, C]``) is a batch of ``N`` images. One image or a list /
tuple of images (sizes may differ) always gives a list of blobs, one per image.

Decoded images have the size and layout of the input: numpy uint8 by default, or with
``output="torch"`` float32 in [0, 1] holding the same 8-bit levels, ``[3, H, W]`` for colour,
``[1, H, W]`` for ``[H, W, 1]`` / ``[1, H, W]`` gray input and ``[H, W]`` for 2-D gray input.

Quality: a float in [1, 6] (1 = smallest files, 6 = best pictures), rounded to the grid of 0.25
(:func:`fastcodec.zoo.snap_quality`). Blobs record the model id and the hash of its weights
file; decoding with other weights raises :class:`fastcodec.container.FormatError`, as does any
damaged or foreign data.
"""

from __future__ import annotations

import os
import time
from typing import Dict, List, Optional

import numpy as np

from fastcodec.container import DEFAULT_MAX_PIXELS, FormatError, pack, read_header
from fastcodec.images import from_rgb_uint8, to_rgb_uint8
from fastcodec.zoo import (DEFAULT_MODEL, WEIGHTS_PATH_ENV, available_models, load_model,
                           snap_quality, weights_path)

__all__ = ["Codec", "compress", "decompress", "default_device", "info"]

_BLOB_TYPES = (bytes, bytearray, memoryview)


def default_device() -> str:
    """``"cuda"`` when a CUDA device is available, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _is_batch(x) -> bool:
    if isinstance(x, np.ndarray):
        return x.ndim == 4
    mod = type(x).__module__
    if mod.startswith("torch"):
        import torch

        return isinstance(x, torch.Tensor) and x.dim() == 4
    return False


def _split_images(images) -> list:
    """One image, a batch or a list/tuple of them -> a flat list of single images."""
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    out = []
    for item in items:
        if _is_batch(item):
            out.extend(item[i] for i in range(item.shape[0]))
        else:
            out.append(item)
    return out


def _split_blobs(blobs) -> list:
    if isinstance(blobs, _BLOB_TYPES):
        return [blobs]
    if not isinstance(blobs, (list, tuple)):
        raise TypeError(f"expected bytes or a list of bytes, got {type(blobs).__name__}")
    for i, b in enumerate(blobs):
        if not isinstance(b, _BLOB_TYPES):
            raise TypeError(f"blobs[{i}] must be bytes, got {type(b).__name__}")
    return list(blobs)


def _merge_stats(op: str, parts) -> dict:
    images = sum(p.images for p in parts)
    mp = sum(p.megapixels for p in parts)
    sec = sum(p.seconds for p in parts)
    return _stats(op, images, mp, sec)


def _stats(op: str, images: int, mp: float, sec: float, **extra) -> dict:
    return {"op": op, "images": images, "megapixels": mp, "seconds": sec,
            "mp_per_s": mp / sec if sec > 0 else 0.0,
            "images_per_s": images / sec if sec > 0 else 0.0, **extra}


class Codec:
    """A configured encoder/decoder (reuse it: the model and tables are loaded once).

    Args:
        quality: public quality in [1, 6], snapped to the 0.25 grid (``self.quality``).
        device: torch device for the transforms (None: CUDA if available, else CPU).
        model: id of an installed model (:func:`fastcodec.zoo.available_models`).
        threads: range-coder threads (None: ``os.cpu_count()``).
        batch_size: images per transform batch (None: 8 on CUDA, 1 on CPU).
        transform_dtype: None (float32), ``torch.bfloat16`` (CUDA or CPU) or ``torch.float16``
            (CUDA): autocast for the transforms; the entropy coding stays bit-exact.
        refine_steps: encoder-side latent refinement, in steps per image (0: off; see
            :mod:`fastcodec.refine`): higher PSNR at about the same size (with 50 steps on
            Kodak at quality 6: +1.2 dB, +4% bytes), from the same model and format. Each step
            runs the decoder forward and backward (about 4 decodes of the image). 50 is a
            good start.

    ``last_stats``: dict of the last call (op, images, megapixels, seconds, mp_per_s,
    images_per_s). With rate control, images and megapixels are the caller's, seconds the
    whole search, and ``trial_encodes`` / ``trial_decodes`` count the images coded on the way.
    """

    def __init__(self, quality: float = 4.0, device=None, *, model: str = DEFAULT_MODEL,
                 threads: Optional[int] = None, batch_size: Optional[int] = None,
                 transform_dtype=None, refine_steps: int = 0):
        self.quality = snap_quality(quality)
        self.device = default_device() if device is None else device
        self.model_id = model
        self.threads = (os.cpu_count() or 1) if threads is None else threads
        self.batch_size = batch_size
        self.transform_dtype = transform_dtype
        self.refine_steps = refine_steps
        self._engines: Dict[str, object] = {}
        self.last_stats: Optional[dict] = None
        self.last_choices: Optional[List[dict]] = None
        # fail early on an unknown model or bad settings; the engine resolves the defaults
        self.batch_size = self._engine(model).batch_size

    def _engine(self, model_id: str):
        eng = self._engines.get(model_id)
        if eng is None:
            from fastcodec.engine import Engine

            eng = Engine(load_model(model_id, self.device), self.device, threads=self.threads,
                         batch_size=self.batch_size, transform_dtype=self.transform_dtype,
                         refine_steps=self.refine_steps)
            self._engines[model_id] = eng
        return eng

    def compress(self, images, *, convert: bool = False, quality: Optional[float] = None,
                 target_bpp: Optional[float] = None, target_psnr: Optional[float] = None
                 ) -> List[bytes]:
        """Codes one image, a batch or a list of images (sizes may differ); one blob each.
        ``quality`` overrides the codec's for this call; ``convert`` see
        :func:`fastcodec.images.to_rgb_uint8`.

        Rate control (instead of a quality; see :mod:`fastcodec.rate_control`):
        ``target_bpp`` picks per image the highest grid quality whose file is at most that many
        bits per pixel, ``target_psnr`` the lowest whose decoded RGB PSNR reaches that many dB
        (the nearest extreme quality when no quality meets the target;
        ``last_choices`` lists the chosen quality, value and whether it was met)."""
        targets = [t for t in (quality, target_bpp, target_psnr) if t is not None]
        if len(targets) > 1:
            raise ValueError("give at most one of quality, target_bpp and target_psnr")
        for name, t in (("target_bpp", target_bpp), ("target_psnr", target_psnr)):
            if t is not None and (isinstance(t, bool)
                                  or not isinstance(t, (int, float, np.integer, np.floating))
                                  or not t > 0 or not np.isfinite(t)):
                raise ValueError(f"{name} must be a positive finite number, got {t!r}")
        target_bpp = None if target_bpp is None else float(target_bpp)
        target_psnr = None if target_psnr is None else float(target_psnr)
        q = self.quality if quality is None else snap_quality(quality)
        items = _split_images(images)
        many = len(items) != 1 or isinstance(images, (list, tuple)) or _is_batch(images)
        rgbs, layouts = [], []
        for i, item in enumerate(items):
            try:
                rgb, layout = to_rgb_uint8(item, convert=convert)
            except (TypeError, ValueError) as exc:
                if many:
                    raise type(exc)(f"image {i}: {exc}") from None
                raise
            rgbs.append(rgb)
            layouts.append(layout)
        eng = self._engine(self.model_id)
        parts = []
        decodes = []

        def encode(indices, q):
            coded = eng.encode([rgbs[i] for i in indices], q)
            parts.append(eng.last_stats)
            sm = eng.shipped
            return [
                pack(model_id=sm.model_id, weights_hash=sm.weights_hash, quality=q,
                     height=rgbs[i].shape[0], width=rgbs[i].shape[1], layout=layouts[i],
                     latent_shape=shape, streams=streams)
                for i, (shape, streams) in zip(indices, coded)
            ]

        if target_bpp is None and target_psnr is None:
            blobs = encode(range(len(rgbs)), q)
            self.last_choices = None
            self.last_stats = _merge_stats("compress", parts)
        else:
            from fastcodec import rate_control
            from fastcodec.metrics import psnr

            if target_bpp is not None:
                def measure(i, blob):
                    return 8.0 * len(blob) / (rgbs[i].shape[0] * rgbs[i].shape[1])
            else:
                def measure(i, blob):
                    (_, decoded), = eng.decode([blob])
                    decodes.append(eng.last_stats)
                    return psnr(rgbs[i], decoded)
            start = time.perf_counter()
            choices = rate_control.search(
                len(rgbs), eng.shipped.qualities, encode, measure,
                target_bpp if target_bpp is not None else target_psnr,
                larger_is_better=target_psnr is not None)
            blobs = [c.blob for c in choices]
            self.last_choices = [{"quality": c.quality, "value": c.value, "met": c.met}
                                 for c in choices]
            self.last_stats = _stats(
                "compress", len(rgbs), sum(r.shape[0] * r.shape[1] for r in rgbs) / 1e6,
                time.perf_counter() - start, trial_encodes=sum(p.images for p in parts),
                trial_decodes=sum(p.images for p in decodes))
        return blobs

    def decompress(self, blobs, *, output: str = "numpy",
                   max_pixels: int = DEFAULT_MAX_PIXELS) -> list:
        """Decodes one blob or a list of blobs (any installed model); returns a list of images
        in their original size and layout (``output="numpy"`` or ``"torch"``). Raises
        FormatError for damaged or foreign data, for blobs of models that are not installed
        and for weights that differ from the ones that coded the blob; ``max_pixels`` caps
        ``height * width`` per image."""
        if output not in ("numpy", "torch"):
            raise ValueError(f"output must be 'numpy' or 'torch', got {output!r}")
        blobs = _split_blobs(blobs)
        groups: Dict[str, List[int]] = {}
        for i, b in enumerate(blobs):
            try:
                header = read_header(b, max_pixels=max_pixels)
            except FormatError as exc:
                raise FormatError(f"image {i}: {exc}") from None
            groups.setdefault(header.model_id, []).append(i)
        for model_id, idx in groups.items():
            if model_id in self._engines:
                continue
            try:
                weights_path(model_id)  # one lookup, not a listing of every weights folder
            except ValueError:
                installed = available_models()
                raise FormatError(f"image {idx[0]}: stream was coded with model {model_id!r}, "
                                  f"which is not installed (installed: "
                                  f"{', '.join(installed) or 'none'}); "
                                  f"put its weights file {model_id}.pt in a folder on "
                                  f"${WEIGHTS_PATH_ENV}") from None
        out: list = [None] * len(blobs)
        parts = []
        for model_id, idx in groups.items():
            eng = self._engine(model_id)
            decoded = eng.decode([blobs[i] for i in idx], max_pixels=max_pixels, labels=idx)
            parts.append(eng.last_stats)
            for i, (header, rgb) in zip(idx, decoded):
                out[i] = from_rgb_uint8(rgb, header.layout, output)
        self.last_stats = _merge_stats("decompress", parts)
        return out


def compress(images, quality: float = 4.0, device=None, *, convert: bool = False,
             target_bpp: Optional[float] = None, target_psnr: Optional[float] = None,
             **kw) -> List[bytes]:
    """``Codec(quality, device, **kw).compress(images, convert=convert, ...)``; a
    ``target_bpp`` or ``target_psnr`` replaces the quality (see :meth:`Codec.compress`)."""
    codec = Codec(quality, device, **kw)
    return codec.compress(images, convert=convert, target_bpp=target_bpp,
                          target_psnr=target_psnr)


def decompress(blobs, device=None, output: str = "numpy", *,
               max_pixels: int = DEFAULT_MAX_PIXELS, **kw) -> list:
    """``Codec(device=device, **kw).decompress(blobs, output=output)`` (the model of each blob
    is taken from its header)."""
    return Codec(device=device, **kw).decompress(blobs, output=output, max_pixels=max_pixels)


def info(blob, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> dict:
    """Header fields of a blob (:meth:`fastcodec.container.Header.to_dict`) plus ``bytes`` (its
    size) and ``bpp`` (bits per pixel of the original image). Reads the header only (the
    payload CRC is checked when decoding)."""
    if not isinstance(blob, _BLOB_TYPES):
        raise TypeError(f"expected bytes, got {type(blob).__name__}")
    header = read_header(blob, max_pixels=max_pixels)
    d = header.to_dict()
    n = memoryview(blob).nbytes
    d["bytes"] = n
    d["bpp"] = 8.0 * n / (header.height * header.width)
    return d
