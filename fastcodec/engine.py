"""The pipelined batch engine: transforms in batches on the device, range coding on a thread pool.

Encode (:meth:`Engine.encode`)::

    images (uint8 HxWx3) --group by (H, W)--> batches of batch_size
      per batch: stack -> float [0, 1] -> replicate pad to 16k -> g_a (inference mode)
                 [-> refine_steps of latent refinement (fastcodec.refine), if asked]
                 -> symbols = round(y * gain - median) int32, copied to the host
                 -> range coding submitted to the pool; the next batch's transforms start at once

Decode (:meth:`Engine.decode`)::

    blobs --container.unpack + model check--> group by (latent shape, quality) -> batches
      per batch: range decoding submitted to the pool (a few batches ahead)
                 -> symbols + median, * inverse gain -> g_s -> clamp, round -> uint8 -> crop

The transforms run channels_last (faster on CPU and CUDA). On CUDA host->device copies go
from pinned memory with ``non_blocking=True``, symbols come back into pinned buffers (the coding
tasks wait on a CUDA event before reading them), and ``transform_dtype`` (float16 / bfloat16)
runs the transforms under autocast (bfloat16 also on CPU, where it pays off on CPUs with
AMX/AVX512-BF16). The quantization (gain, median, rounding) is always float32.

Sub-streams: each image's latent ``[M, h, w]`` is split along the channels into ``S`` streams
(stream ``i`` = channels ``container.channel_ranges(M, S)[i]``, one CDF table per channel), and
every stream is one task on the pool, so a single large image is also coded and decoded in
parallel. ``S = ceil(padded pixels / PIXELS_PER_STREAM)`` clamped to ``[1, MAX_STREAMS]``: one
stream up to 2 megapixels (each stream costs 32 bytes of coder state), then one more per 2
megapixels, at most 16. The decoder reads ``S`` from the container, so the policy can change
without breaking old files.

Tiling: an image larger than ``tile_size`` pixels on a side (default 2048) runs ``g_a`` and
``g_s`` tile by tile (:mod:`fastcodec.tiling`), so the transforms' activations, which would
take 10+ GB for a 50-megapixel photo, stay bounded by the tile size. Each tile carries a halo of
a few latent pixels (the transforms' receptive-field radius, from their kernel sizes, plus a
margin) and only its interior is kept, so the result is the whole-image one up to
floating-point summation order; smaller images take the single untiled pass as before.

Entropy coding uses only the stored integer tables of the shipped model and is bit-exact: the
bytes and the decoded symbols never depend on the thread count. Bad bytes always surface as
:class:`fastcodec.container.FormatError`.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from fastcodec.container import (
    DEFAULT_MAX_PIXELS,
    FormatError,
    Header,
    channel_ranges,
    unpack,
)
from fastcodec.entropy.cdf import min_code_bits
from fastcodec.models import pad_to_multiple
from fastcodec.refine import check_steps, refine_latent
from fastcodec.tiling import (
    analysis_tiled,
    receptive_halo_analysis,
    receptive_halo_synthesis,
    synthesis_tiled,
)

__all__ = ["DEFAULT_TILE_SIZE", "Engine", "MAX_STREAMS", "PIXELS_PER_STREAM", "Stats",
           "num_streams"]

#: Padded pixels per range-coder stream before an image gets another one.
PIXELS_PER_STREAM = 2 * 2**20
#: Most streams per image.
MAX_STREAMS = 16
#: Batches whose range coding may still be running while the next batch is transformed
#: (bounds the host memory held by symbols waiting for the coder).
_AHEAD = 3
_STRIDE = 16
#: Slack in bytes of the stream-size bound: the coder's final states (4 x 8 bytes) and more.
_STATE_BYTES = 64
#: Tile side in image pixels above which the transforms run tiled (CPU and CUDA alike).
DEFAULT_TILE_SIZE = 2048


def num_streams(height: int, width: int, channels: int) -> int:
    """Streams for an image of ``height x width`` pixels with ``channels`` latent channels."""
    padded = (-(-height // _STRIDE) * _STRIDE) * (-(-width // _STRIDE) * _STRIDE)
    return max(1, min(MAX_STREAMS, channels, math.ceil(padded / PIXELS_PER_STREAM)))


@dataclass
class Stats:
    """Throughput of one or more calls: ``images``, ``megapixels`` (original sizes, 1e6 px) and
    wall-clock ``seconds``."""

    images: int = 0
    megapixels: float = 0.0
    seconds: float = 0.0

    @property
    def mp_per_s(self) -> float:
        return self.megapixels / self.seconds if self.seconds > 0 else 0.0

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def add(self, other: "Stats") -> None:
        self.images += other.images
        self.megapixels += other.megapixels
        self.seconds += other.seconds

    def as_dict(self) -> dict:
        return {"images": self.images, "megapixels": self.megapixels, "seconds": self.seconds,
                "mp_per_s": self.mp_per_s, "images_per_s": self.images_per_s}


_DTYPES = {
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float32": None, "fp32": None,
}


def _transform_dtype(value, device: torch.device):
    if value is None or value == torch.float32:
        return None
    if isinstance(value, str):
        if value.lower() not in _DTYPES:
            raise ValueError(f"transform_dtype must be float16, bfloat16 or None, got {value!r}")
        value = _DTYPES[value.lower()]
        if value is None:
            return None
    if value not in (torch.float16, torch.bfloat16):
        raise ValueError(f"transform_dtype must be float16, bfloat16 or None, got {value!r}")
    if device.type != "cuda" and value != torch.bfloat16:
        raise ValueError("transform_dtype float16 needs a CUDA device; on "
                         f"{device} use bfloat16 (fast on CPUs with AMX/AVX512-BF16) or float32 "
                         "(the default)")
    return value


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _tile_size(value) -> int:
    """``value`` (image pixels) checked to be a positive multiple of the latent stride."""
    if value is None:
        return DEFAULT_TILE_SIZE
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1 \
            or value % _STRIDE:
        raise ValueError(f"tile_size must be a positive multiple of {_STRIDE} (image pixels), "
                         f"got {value!r}")
    return int(value)


def _batches(keys: Sequence, batch_size: int) -> List[List[int]]:
    """Indices grouped by equal key (groups in order of first appearance), split into chunks
    of at most ``batch_size``."""
    groups: Dict[object, List[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    return [idx[s : s + batch_size] for idx in groups.values()
            for s in range(0, len(idx), batch_size)]


def _channel_indexes(c0: int, c1: int, h: int, w: int) -> np.ndarray:
    """Table of every symbol of channels ``[c0, c1)``: the channel number (int32 view)."""
    return np.broadcast_to(np.arange(c0, c1, dtype=np.int32)[:, None, None], (c1 - c0, h, w))


class Engine:
    """Batch encoder/decoder for one shipped model on one device.

    Args:
        shipped: a :class:`fastcodec.zoo.ShippedModel` (its model's device is used).
        device: the device to run the transforms on; must be the shipped model's (None: it).
        threads: range-coder threads (None: ``os.cpu_count()``).
        batch_size: images per transform batch (images of equal size only; None: 8 on CUDA,
            1 on CPU, where batching measured ~15 % slower per image).
        transform_dtype: None (float32), ``torch.float16`` / ``torch.bfloat16`` (or their names)
            for autocast transforms: both on CUDA, bfloat16 on CPU.
        tile_size: tile side in image pixels (a positive multiple of 16; None: 2048). Images
            (padded to 16k) with a side above it run the transforms tile by tile with exact
            halos, bounding their activation memory (see :mod:`fastcodec.tiling`); smaller
            ones take one untiled pass.
        refine_steps: encoder-side latent refinement steps per image (0: none; see
            :mod:`fastcodec.refine`). Better pictures at about the same rate, same format;
            each step runs the synthesis forward and backward (about 4 decodes).

    ``stats``: cumulative :class:`Stats` per ``"encode"`` / ``"decode"``; ``last_stats``: those
    of the last call.
    """

    def __init__(self, shipped, device=None, *, threads: Optional[int] = None,
                 batch_size: Optional[int] = None, transform_dtype=None,
                 tile_size: Optional[int] = None, refine_steps: int = 0) -> None:
        self.shipped = shipped
        self.model = shipped.model
        self.device = torch.device(shipped.device if device is None else device)
        model_dev = next(self.model.parameters()).device
        if self.device.type != model_dev.type or (
            self.device.index is not None and self.device.index != model_dev.index
        ):
            raise ValueError(f"the shipped model is on {model_dev}, the engine was asked for "
                             f"{self.device}: load the model on that device")
        self.device = model_dev
        self.cuda = self.device.type == "cuda"
        self.threads = _positive_int(
            "threads", (os.cpu_count() or 1) if threads is None else threads)
        self.batch_size = (8 if self.cuda else 1) if batch_size is None else _positive_int(
            "batch_size", batch_size)
        self.transform_dtype = _transform_dtype(transform_dtype, self.device)
        self.tile_size = _tile_size(tile_size)
        self.refine_steps = check_steps(refine_steps)
        self._halo_analysis = receptive_halo_analysis(self.model.g_a)
        self._halo_synthesis = receptive_halo_synthesis(self.model.g_s)
        # channels_last is faster for these convolutions on CUDA and on CPU alike
        self.model.to(memory_format=torch.channels_last)
        self._quant: Dict[float, Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._min_bits: Dict[float, np.ndarray] = {}  # quality -> [M + 1] cumulative bits
        self.stats = {"encode": Stats(), "decode": Stats()}
        self.last_stats = Stats()

    # ------------------------------------------------------------------ helpers
    def _quantizer(self, quality: float):
        """(gain, inverse gain, median) float32 ``[1, M, 1, 1]`` on the device for ``quality``
        (the medians are the stored ones)."""
        q = self.shipped.check_quality(quality)
        out = self._quant.get(q)
        if out is None:
            with torch.inference_mode():
                g, ig = self.model.gains(q - 1.0)
            med = torch.from_numpy(self.shipped.tables[q].medians).to(self.device)
            out = tuple(t.detach().float().reshape(1, -1, 1, 1).to(self.device)
                        for t in (g, ig, med))
            self._quant[q] = out
        return out

    def _autocast(self):
        if self.transform_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.transform_dtype)

    def _finish(self, op: str, images: int, pixels: int, t0: float) -> None:
        s = Stats(images, pixels / 1e6, time.perf_counter() - t0)
        self.last_stats = s
        self.stats[op].add(s)

    # ------------------------------------------------------------------ encode
    def _analyze(self, arrays: List[np.ndarray], quality: float):
        """Symbols of same-sized uint8 ``[H, W, 3]`` images: (int32 host array ``[B, M, h, w]``,
        CUDA event to wait for before reading it, or None)."""
        gain, _, med = self._quantizer(quality)
        batch = torch.from_numpy(np.stack(arrays))  # uint8 [B, H, W, 3]
        if self.cuda:
            batch = batch.pin_memory().to(self.device, non_blocking=True)
        with torch.inference_mode():
            x = batch.permute(0, 3, 1, 2).float().div_(255.0)
            x = pad_to_multiple(x, _STRIDE, "replicate")
            x = x.contiguous(memory_format=torch.channels_last)
            with self._autocast():
                y = analysis_tiled(self.model.g_a, x, self.tile_size, self._halo_analysis)
            y = y.float()
        if self.refine_steps:
            y = self._refine(x, y, quality, arrays[0].shape[:2])
        with torch.inference_mode():
            sym = torch.round(y * gain - med).to(torch.int32)
            if not self.cuda:
                return sym.contiguous().numpy(), None
            host = torch.empty(sym.shape, dtype=torch.int32, pin_memory=True)
            host.copy_(sym.contiguous(), non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        return host.numpy(), event

    def _refine(self, x: torch.Tensor, y: torch.Tensor, quality: float, size) -> torch.Tensor:
        """``y`` refined for ``refine_steps`` steps (:func:`fastcodec.refine.refine_latent`);
        the synthesis runs under the engine's autocast when it is bfloat16, else in float32."""
        gain, igain, med = self._quantizer(quality)
        lam = float(self.model.lambda_of(quality - 1.0))
        dtype = self.transform_dtype if self.transform_dtype == torch.bfloat16 else None
        return refine_latent(self.model.g_s, self.model.entropy, x, y, gain, igain, med, lam,
                             self.refine_steps, size=tuple(size), halo=self._halo_synthesis,
                             autocast_dtype=dtype)

    @staticmethod
    def _encode_stream(coder, symbols: np.ndarray, b: int, c0: int, c1: int, event) -> bytes:
        if event is not None:
            event.synchronize()
        _, _, h, w = symbols.shape
        return coder.encode(symbols[b, c0:c1], _channel_indexes(c0, c1, h, w))

    def encode(self, rgb_images: Sequence[np.ndarray], quality: float
               ) -> List[Tuple[Tuple[int, int, int], List[bytes]]]:
        """Codes uint8 ``[H, W, 3]`` images at public ``quality`` (a stored grid quality).

        Returns, in input order, ``(latent_shape (M, h, w), streams)`` per image: the arguments
        :func:`fastcodec.container.pack` needs besides the header fields the caller knows."""
        t0 = time.perf_counter()
        quality = self.shipped.check_quality(quality)
        for i, im in enumerate(rgb_images):
            if not (isinstance(im, np.ndarray) and im.dtype == np.uint8 and im.ndim == 3
                    and im.shape[2] == 3 and im.shape[0] >= 1 and im.shape[1] >= 1):
                raise ValueError(f"image {i}: expected uint8 [H, W, 3], got "
                                 f"{getattr(im, 'dtype', type(im))} {getattr(im, 'shape', '')}")
        coder = self.shipped.coder(quality)
        M = self.model.M
        results: List[Optional[Tuple]] = [None] * len(rgb_images)
        pending: deque = deque()

        def collect(entry) -> None:
            for i, shape, futs in entry:
                results[i] = (shape, [f.result() for f in futs])

        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="fastcodec-encode")
        try:
            for idx in _batches([im.shape[:2] for im in rgb_images], self.batch_size):
                symbols, event = self._analyze([rgb_images[i] for i in idx], quality)
                _, _, h, w = symbols.shape
                H, W = rgb_images[idx[0]].shape[:2]
                ranges = channel_ranges(M, num_streams(H, W, M))
                entry = [(i, (M, h, w), [pool.submit(self._encode_stream, coder, symbols, b,
                                                     c0, c1, event) for c0, c1 in ranges])
                         for b, i in enumerate(idx)]
                pending.append(entry)
                if len(pending) > _AHEAD:
                    collect(pending.popleft())
            while pending:
                collect(pending.popleft())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        self._finish("encode", len(rgb_images),
                     sum(im.shape[0] * im.shape[1] for im in rgb_images), t0)
        return results

    # ------------------------------------------------------------------ decode
    def parse(self, blob, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Tuple[Header, List[bytes]]:
        """``container.unpack`` plus the checks that the stream belongs to this model: same
        model id and weights hash, a stored quality, the model's latent channels."""
        header, streams = unpack(blob, max_pixels=max_pixels)
        sm = self.shipped
        if header.model_id != sm.model_id or header.weights_hash != sm.weights_hash:
            raise FormatError(
                f"stream was coded with model {header.model_id!r} (weights "
                f"{header.weights_hash.hex()}), but this decoder has model {sm.model_id!r} "
                f"(weights {sm.weights_hash.hex()}); decode it with the same weights"
            )
        if header.quality not in sm.tables:
            raise FormatError(
                f"stream quality {header.quality:g} is not one of the qualities of model "
                f"{sm.model_id} ({sm.qualities[0]:g}..{sm.qualities[-1]:g} in steps of 0.25)"
            )
        if header.latent_shape[0] != self.model.M:
            raise FormatError(f"stream has {header.latent_shape[0]} latent channels, model "
                              f"{sm.model_id} has {self.model.M}")
        self._check_stream_sizes(header, streams)
        return header, streams

    def _check_stream_sizes(self, header: Header, streams: List[bytes]) -> None:
        """FormatError when a stream is shorter than its symbols could ever code to with this
        model's tables: a truncated or crafted file (e.g. a few bytes declaring a huge image)
        fails here, before any decoding buffer is allocated. The bound (``min_code_bits`` per
        symbol, less 0.1% for the coder's integer rounding and 64 bytes for its final states)
        is below every real stream's size."""
        bits = self._min_bits.get(header.quality)
        if bits is None:
            t = self.shipped.tables[header.quality]
            bits = np.concatenate([[0.0], np.cumsum(min_code_bits(t.cdfs, t.cdf_lengths,
                                                                  t.precision))])
            self._min_bits[header.quality] = bits
        m, h, w = header.latent_shape
        for s, (c0, c1) in enumerate(channel_ranges(m, len(streams))):
            need = 0.999 * h * w * (bits[c1] - bits[c0]) / 8 - _STATE_BYTES
            if len(streams[s]) < need:
                raise FormatError(
                    f"range-coder stream {s} of {len(streams)} has {len(streams[s])} bytes, but "
                    f"its {(c1 - c0) * h * w} symbols need at least {math.ceil(need)} with the "
                    f"tables of model {self.shipped.model_id} at quality {header.quality:g}: "
                    f"the file is truncated or damaged")

    @staticmethod
    def _decode_stream(coder, data: bytes, out: np.ndarray, b: int, c0: int, c1: int,
                       stream: int, image: int, count: int) -> None:
        _, _, h, w = out.shape
        try:
            out[b, c0:c1] = coder.decode(data, _channel_indexes(c0, c1, h, w))
        except (ValueError, RuntimeError, OverflowError) as exc:
            raise FormatError(f"image {image}: range-coder stream {stream} of {count} is "
                              f"corrupt ({exc})") from None

    def _submit_decode(self, pool, parsed, idx, labels):
        header = parsed[idx[0]][0]
        M, h, w = header.latent_shape
        coder = self.shipped.coder(header.quality)
        shape = (len(idx), M, h, w)
        if self.cuda:
            out = torch.empty(shape, dtype=torch.int32, pin_memory=True)
            out_np = out.numpy()
        else:
            out = out_np = np.empty(shape, dtype=np.int32)
        futs = []
        for b, i in enumerate(idx):
            hd, streams = parsed[i]
            ranges = channel_ranges(M, len(streams))
            futs += [pool.submit(self._decode_stream, coder, streams[s], out_np, b, c0, c1, s,
                                 labels[i], len(streams)) for s, (c0, c1) in enumerate(ranges)]
        return idx, header.quality, out, futs

    def _synthesize(self, entry, parsed, results) -> None:
        idx, quality, out, futs = entry
        for f in futs:
            f.result()
        _, igain, med = self._quantizer(quality)
        sym = torch.as_tensor(out) if not self.cuda else out.to(self.device, non_blocking=True)
        with torch.inference_mode():
            y = ((sym.float() + med) * igain).contiguous(memory_format=torch.channels_last)
            with self._autocast():
                x = synthesis_tiled(self.model.g_s, y, self.tile_size // _STRIDE,
                                    self._halo_synthesis)
            x = x.float().clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
            x = x.permute(0, 2, 3, 1)
            if self.cuda:
                x = x.cpu()
        arr = x.numpy()
        for b, i in enumerate(idx):
            hd = parsed[i][0]
            results[i] = (hd, np.ascontiguousarray(arr[b, : hd.height, : hd.width]))

    def decode(self, blobs: Sequence, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               labels: Optional[Sequence[int]] = None) -> List[Tuple[Header, np.ndarray]]:
        """Decodes ``.fcc`` blobs of this model; returns ``(header, uint8 [H, W, 3])`` per blob
        in input order. Raises FormatError for anything wrong with the bytes (see
        :meth:`parse`), saying which image ("image ``labels[i]``", default ``i``) and, for a
        corrupt range-coder stream, which stream."""
        t0 = time.perf_counter()
        labels = list(range(len(blobs))) if labels is None else list(labels)
        parsed = []
        for label, blob in zip(labels, blobs):
            try:
                parsed.append(self.parse(blob, max_pixels=max_pixels))
            except FormatError as exc:
                raise FormatError(f"image {label}: {exc}") from None
        results: List[Optional[Tuple]] = [None] * len(parsed)
        keys = [(hd.latent_shape, hd.quality) for hd, _ in parsed]
        pending: deque = deque()
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="fastcodec-decode")
        try:
            for idx in _batches(keys, self.batch_size):
                pending.append(self._submit_decode(pool, parsed, idx, labels))
                if len(pending) > _AHEAD:
                    self._synthesize(pending.popleft(), parsed, results)
            while pending:
                self._synthesize(pending.popleft(), parsed, results)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        self._finish("decode", len(parsed), sum(hd.height * hd.width for hd, _ in parsed), t0)
        return results
