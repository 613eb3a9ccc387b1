"""Optional anchors for the range-coder benchmark: constriction and CompressAI's rANS coder.

Both get the same tables as fastcodec, and both are driven the way their own users drive them,
with everything that can be prepared once (models, Python lists) prepared outside the timed part,
so the anchors are timed at their best and the fastcodec/anchor ratios are, if anything, low.

* **constriction** (``constriction.stream.queue.RangeEncoder`` / ``RangeDecoder``, its default
  range coder: 32-bit words, 64-bit state, 24-bit model precision). One
  ``constriction.stream.model.Categorical(probabilities, perfect=False)`` per channel, built once,
  whose probabilities are the quantized table frequencies ``diff(cdf) / 2**16`` *including* the
  escape bin (constriction re-quantizes them to its 24-bit precision; ``freq * 256`` is exact).
  One encoder per image: its channels are encoded one after the other, each as one
  ``encode(bins_of_channel, model)`` call, so each image is one stream. Symbols are given as bin
  numbers ``s - offset`` (precomputed); a symbol outside its row's support is coded as the escape
  bin and its value is *not* coded (constriction has no bypass code), so constriction's stream
  is missing the (few) escape payloads that fastcodec and CompressAI carry; the decoded bins are
  compared with those bins. The workload's indexes are channel-major, which is what lets a
  channel be one ``encode`` call.
* **CompressAI** (``compressai.ans``, its C++ rANS coder, loaded on its own from the installed
  package without importing ``compressai``, which needs torchvision). Same conventions as fastcodec
  (``cdfs``, ``cdf_sizes``, ``offsets``, 16-bit, escape bin with bypass), so it gets exactly the
  same tables. Its API takes Python lists; the symbol and index lists are made once (outside the
  timed part), the pybind11 list conversion inside each call is part of its cost.

A missing package raises :class:`AnchorUnavailable` with a reason (the tests turn it into a
visible skip).
"""

from __future__ import annotations

import importlib.machinery
import importlib.metadata
import importlib.util
import os
import sys

import numpy as np

__all__ = [
    "AnchorUnavailable",
    "CompressAICoder",
    "ConstrictionCoder",
    "load_compressai_ans",
    "load_constriction",
]


class AnchorUnavailable(RuntimeError):
    """The anchor's package is missing or unusable (the message says why)."""


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


# --------------------------------------------------------------------------------------------
# constriction


def load_constriction():
    try:
        import constriction  # noqa: PLC0415
    except ImportError as exc:
        raise AnchorUnavailable(
            f"constriction is not installed ({exc}); `pip install constriction` to compare with it"
        ) from None
    stream = getattr(constriction, "stream", None)
    if stream is None or not all(
        hasattr(getattr(stream, m, None), n)
        for m, n in (("queue", "RangeEncoder"), ("queue", "RangeDecoder"), ("model", "Categorical"))
    ):
        raise AnchorUnavailable(
            f"constriction {_version('constriction')} lacks stream.queue.RangeEncoder/RangeDecoder "
            "or stream.model.Categorical"
        )
    return constriction


class ConstrictionCoder:
    """constriction's range coder on the workload, one stream per image (see the module doc)."""

    name = "constriction"

    def __init__(self, workload):
        cs = load_constriction()
        self.version = _version("constriction")
        self._queue = cs.stream.queue
        b, c, h, w = workload.shape
        channel_major = np.broadcast_to(np.arange(c, dtype=np.int32)[:, None, None], (c, h, w))
        if not np.array_equal(workload.indexes, channel_major):
            raise ValueError("ConstrictionCoder needs channel-major indexes (index == channel)")
        scale = float(1 << workload.precision)
        self.models = []
        for t in range(c):
            n = int(workload.cdf_lengths[t])
            freqs = np.diff(workload.cdfs[t, :n].astype(np.int64))  # regular bins + escape bin
            self.models.append(cs.stream.model.Categorical(freqs / scale, perfect=False))
        self.bins = np.ascontiguousarray(workload.bins.reshape(b, c, h * w), dtype=np.int32)
        self.shape = (b, c, h * w)

    def encode(self) -> list[np.ndarray]:
        """One ``uint32`` word array per image."""
        out = []
        for image in self.bins:
            enc = self._queue.RangeEncoder()
            for channel_bins, model in zip(image, self.models):
                enc.encode(channel_bins, model)
            out.append(enc.get_compressed())
        return out

    def decode(self, streams) -> np.ndarray:
        """Decoded bins, int32 ``[B, C, H*W]``."""
        b, c, n = self.shape
        out = np.empty(self.shape, dtype=np.int32)
        for i, words in enumerate(streams):
            dec = self._queue.RangeDecoder(words)
            for ch, model in enumerate(self.models):
                out[i, ch] = dec.decode(model, n)
        return out

    @staticmethod
    def stream_bytes(streams) -> int:
        return int(sum(s.nbytes for s in streams))


# --------------------------------------------------------------------------------------------
# CompressAI


def load_compressai_ans():
    """CompressAI's compiled ``ans`` module, loaded on its own (``import compressai`` pulls in
    torchvision and tqdm, which the benchmark does not need)."""
    mod = sys.modules.get("compressai.ans")
    if mod is not None:
        return mod
    try:
        spec = importlib.util.find_spec("compressai")  # locates the package without importing it
    except (ImportError, ValueError) as exc:
        spec, why = None, str(exc)
    else:
        why = "not found"
    if spec is None or not spec.submodule_search_locations:
        raise AnchorUnavailable(
            f"compressai is not installed ({why}); `pip install compressai` to compare with it"
        )
    candidates = [
        os.path.join(d, "ans" + suffix)
        for d in spec.submodule_search_locations
        for suffix in importlib.machinery.EXTENSION_SUFFIXES
    ]
    path = next((p for p in candidates if os.path.isfile(p)), None)
    if path is None:
        raise AnchorUnavailable(
            f"compressai {_version('compressai')} is installed but has no compiled ans module "
            f"(looked for {', '.join(candidates)})"
        )
    try:
        loader = importlib.machinery.ExtensionFileLoader("compressai.ans", path)
        mspec = importlib.util.spec_from_file_location("compressai.ans", path, loader=loader)
        mod = importlib.util.module_from_spec(mspec)
        loader.exec_module(mod)
    except Exception as exc:  # noqa: BLE001 - any load failure means "anchor unavailable"
        raise AnchorUnavailable(f"cannot load CompressAI's ans module {path}: {exc}") from None
    if not (hasattr(mod, "RansEncoder") and hasattr(mod, "RansDecoder")):
        raise AnchorUnavailable(f"{path} has no RansEncoder/RansDecoder")
    return mod


class CompressAICoder:
    """CompressAI's rANS coder on the workload with the same tables (see the module doc)."""

    name = "compressai"

    def __init__(self, workload):
        ans = load_compressai_ans()
        self.version = _version("compressai")
        if workload.precision != 16:
            raise ValueError("CompressAI's coder is 16-bit only")
        lengths = workload.cdf_lengths
        self.cdfs = [workload.cdfs[t, : int(n)].tolist() for t, n in enumerate(lengths)]
        self.cdf_sizes = lengths.tolist()
        self.offsets = workload.offsets.tolist()
        self.index_list = workload.indexes.reshape(-1).tolist()
        self.symbol_lists = [image.reshape(-1).tolist() for image in workload.symbols]
        self.shape = workload.symbols.shape
        self._encoder = ans.RansEncoder()
        self._decoder = ans.RansDecoder()

    def encode(self) -> list[bytes]:
        enc = self._encoder
        return [
            enc.encode_with_indexes(sym, self.index_list, self.cdfs, self.cdf_sizes, self.offsets)
            for sym in self.symbol_lists
        ]

    def decode(self, streams) -> list[list[int]]:
        dec = self._decoder
        return [
            dec.decode_with_indexes(s, self.index_list, self.cdfs, self.cdf_sizes, self.offsets)
            for s in streams
        ]

    def as_array(self, decoded) -> np.ndarray:
        return np.asarray(decoded, dtype=np.int32).reshape(self.shape)

    @staticmethod
    def stream_bytes(streams) -> int:
        return int(sum(len(s) for s in streams))
