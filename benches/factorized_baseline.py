"""The bmshj2018-factorized architecture as the learned-codec speed baseline of the codec benchmark.

The model is the factorized-prior model of Ballé, Minnen, Singh, Hwang and Johnston, "Variational
image compression with a scale hyperprior" (ICLR 2018), as CompressAI ships it
(``compressai.zoo.bmshj2018_factorized``, qualities 1-5: ``N = 128``, ``M = 192``):

* analysis ``g_a``: four 5x5 stride-2 convolutions ``3 -> N -> N -> N -> M`` with a GDN after each
  of the first three (1/16 resolution);
* synthesis ``g_s``: four 5x5 stride-2 transposed convolutions ``M -> N -> N -> N -> 3`` with an
  inverse GDN after each of the first three;
* an entropy bottleneck: the latent is rounded around per-channel medians and each image is
  range coded with one table per channel (``compress`` / ``decompress`` of the model).

Two implementations sit behind one interface (:func:`load_baseline`):

* :class:`CompressAIFactorized`: CompressAI's own model and its ``compress()`` / ``decompress()``
  (its ``EntropyBottleneck`` and C++ rANS coder), used whenever ``compressai.zoo`` imports
  (it needs torchvision and torch_geometric, which this project does not install);
* :class:`FactorizedReimpl`: this file's own implementation of the same architecture -- the same
  layer shapes, hence the same FLOPs, with GDN / IGDN computed as CompressAI computes them
  (``x * rsqrt(beta + conv1x1(x^2, gamma))``) -- whose entropy coding is fastcodec's range coder
  with one discretized Laplace table per channel, called the way CompressAI's bottleneck calls
  its coder (one thread, one image after the other), so the entropy-coding cost is included.
  It is labelled "bmshj2018-factorized architecture (fastcodec re-implementation)", never
  "CompressAI". fastcodec's coder is several times faster than CompressAI's rANS coder (the
  ``coder`` benchmark group), so this baseline is, if anything, faster than CompressAI's model,
  and fastcodec's speed-ups over it are conservative.

Weights are untrained (speed does not depend on them), with one adjustment, the same for both:
PyTorch's default initialisation gives a latent of a fraction of a quantization step, which
rounds to almost all zeros and would make the entropy coding unrealistically cheap. So the last
analysis convolution's output channels are rescaled (:func:`latent_targets`) so that channel
``c`` of the latent of the benchmark images has a mean absolute deviation ``t_c`` spread
log-uniformly over ``LATENT_SPREAD`` quantization steps, like a trained model's mix of nearly
empty and busy channels. The Laplace tables of the re-implementation are those spreads (a
Laplace of scale ``b`` has mean absolute deviation ``b``) around the measured channel medians.

Input and output of both, end to end: a list of ``H x W x 3`` uint8 arrays of one size in, one
``bytes`` stream per image out; decode gives the arrays back (``H``, ``W`` padded to multiples of
16 with replicated edges inside, cropped on the way out).
"""

from __future__ import annotations

import importlib.metadata
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastcodec.entropy.parametric import laplace_cdf_tables
from fastcodec.rangecoder import CdfTables

__all__ = [
    "CompressAIFactorized",
    "Encoded",
    "FactorizedArchitecture",
    "FactorizedReimpl",
    "GDN",
    "LATENT_SPREAD",
    "latent_targets",
    "load_baseline",
]

#: ``(N, M)`` of CompressAI's bmshj2018-factorized at qualities 1-5.
N_CHANNELS, M_CHANNELS = 128, 192
#: Range, in quantization steps, of the per-channel mean absolute deviations of the latent.
LATENT_SPREAD = (0.02, 2.5)
#: Seed of the untrained weights and of the latent spreads.
SEED = 2018
#: Spatial multiple the transforms need (four stride-2 layers).
MULTIPLE = 16


# --------------------------------------------------------------------------------------------
# shared pieces


@dataclass
class Encoded:
    """Streams of one batch: one ``bytes`` per image, and what decoding needs to know."""

    streams: list
    height: int  # image size before padding
    width: int
    latent_hw: tuple  # (h, w) of the latent

    @property
    def num_bytes(self) -> int:
        return int(sum(len(s) for s in self.streams))


def images_to_tensor(images, device) -> Tensor:
    """``B`` uint8 ``H x W x 3`` arrays of one size -> float ``[B, 3, H', W']`` in [0, 1] on
    ``device``, padded (replicate) at the bottom/right to multiples of 16."""
    if not images:
        raise ValueError("need at least one image")
    shapes = {np.shape(im) for im in images}
    if len(shapes) != 1:
        raise ValueError(f"all images of a batch must have one size, got {sorted(shapes)}")
    (shape,) = shapes
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"images must be H x W x 3, got {shape}")
    batch = torch.from_numpy(np.stack(images)).to(device)
    x = batch.permute(0, 3, 1, 2).float().div_(255.0)
    ph, pw = (-shape[0]) % MULTIPLE, (-shape[1]) % MULTIPLE
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x


def tensor_to_images(x: Tensor, height: int, width: int) -> list:
    """``[B, 3, H', W']`` in [0, 1] -> ``B`` uint8 ``height x width x 3`` arrays (on the host)."""
    x = x[:, :, :height, :width].clamp(0.0, 1.0).mul(255.0).round_().to(torch.uint8)
    return list(x.permute(0, 2, 3, 1).contiguous().cpu().numpy())


def latent_targets(channels: int, spread=LATENT_SPREAD, seed: int = SEED) -> np.ndarray:
    """Per-channel mean absolute deviations (quantization steps), log-uniform in ``spread``,
    float64 ``[channels]``, the same for every run."""
    lo, hi = spread
    if not 0 < lo < hi:
        raise ValueError(f"spread must be 0 < low < high, got {spread}")
    rng = np.random.default_rng(seed)
    return np.exp(rng.uniform(math.log(lo), math.log(hi), size=channels))


@torch.no_grad()
def _rescale_latent(last_conv: nn.Module, g_a: nn.Module, x: Tensor, targets: np.ndarray):
    """Rescales the output channels of ``last_conv`` (the last layer of ``g_a``) so that the
    latent of ``x`` has mean absolute deviation ``targets[c]`` around its median in channel
    ``c``; returns the new per-channel medians (float32 ``[M]``)."""
    if not isinstance(last_conv, nn.Conv2d):
        raise TypeError(f"the last analysis layer must be a Conv2d, got {type(last_conv).__name__}")
    y = g_a(x).float()
    flat = y.transpose(0, 1).reshape(y.shape[1], -1)
    median = flat.median(dim=1).values
    spread = (flat - median[:, None]).abs().mean(dim=1).clamp_min(1e-12)
    gain = torch.as_tensor(targets, dtype=torch.float32, device=y.device) / spread
    shape = (-1,) + (1,) * (last_conv.weight.dim() - 1)
    last_conv.weight.mul_(gain.to(last_conv.weight.dtype).view(shape))
    if last_conv.bias is not None:
        last_conv.bias.mul_(gain.to(last_conv.bias.dtype))
    return (median * gain).cpu().numpy().astype(np.float32)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


# --------------------------------------------------------------------------------------------
# the re-implementation


class GDN(nn.Module):
    """Generalized divisive normalization (Ballé et al. 2016) over ``[B, C, H, W]``:
    ``y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)``; ``inverse=True`` multiplies instead
    (IGDN, used in the synthesis). ``beta`` and ``gamma`` are kept non-negative by the usual
    reparametrization (``p = sqrt(v + pedestal)``, ``v = max(p, bound)^2 - pedestal``), evaluated
    at every call as CompressAI does; initial values ``beta = 1``, ``gamma = 0.1 I``."""

    _PEDESTAL = 2.0**-36
    _BETA_MIN = 1e-6

    def __init__(self, channels: int, inverse: bool = False, gamma_init: float = 0.1) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be positive, got {channels}")
        self.inverse = bool(inverse)
        ped = self._PEDESTAL
        self.beta = nn.Parameter(torch.sqrt(torch.ones(channels) + ped))
        self.gamma = nn.Parameter(torch.sqrt(gamma_init * torch.eye(channels) + ped))

    def _nonneg(self, p: Tensor, minimum: float) -> Tensor:
        bound = math.sqrt(minimum + self._PEDESTAL)
        return torch.clamp(p, min=bound) ** 2 - self._PEDESTAL

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        beta = self._nonneg(self.beta, self._BETA_MIN)
        gamma = self._nonneg(self.gamma, 0.0).reshape(c, c, 1, 1)
        norm = F.conv2d(x * x, gamma, beta)
        return x * (torch.sqrt(norm) if self.inverse else torch.rsqrt(norm))


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=5, stride=2, padding=2)


def _deconv(cin: int, cout: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, kernel_size=5, stride=2, padding=2, output_padding=1)


class FactorizedArchitecture(nn.Module):
    """The transforms of bmshj2018-factorized: ``g_a`` ``[B, 3, H, W] -> [B, M, H/16, W/16]``
    and ``g_s`` back (``H``, ``W`` multiples of 16)."""

    def __init__(self, N: int = N_CHANNELS, M: int = M_CHANNELS) -> None:
        super().__init__()
        self.N, self.M = int(N), int(M)
        self.g_a = nn.Sequential(
            _conv(3, N), GDN(N), _conv(N, N), GDN(N), _conv(N, N), GDN(N), _conv(N, M),
        )
        self.g_s = nn.Sequential(
            _deconv(M, N), GDN(N, inverse=True), _deconv(N, N), GDN(N, inverse=True),
            _deconv(N, N), GDN(N, inverse=True), _deconv(N, 3),
        )


class FactorizedReimpl:
    """bmshj2018-factorized (this file's implementation) with fastcodec's range coder.

    ``calibration``: uint8 ``H x W x 3`` images the latent spreads are set on (see the module
    doc); the benchmark passes its own images.
    """

    key = "factorized-reimpl"
    label = "bmshj2018-factorized architecture (fastcodec re-implementation)"
    short = "factorized (re-impl.)"

    def __init__(self, calibration, device="cpu", N: int = N_CHANNELS, M: int = M_CHANNELS,
                 seed: int = SEED, dtype=None) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self.version = None
        torch.manual_seed(seed)
        self.net = FactorizedArchitecture(N, M).eval()
        self.net.to(self.device)
        targets = latent_targets(M, seed=seed)
        x = images_to_tensor(list(calibration), self.device)
        self.medians = _rescale_latent(self.net.g_a[-1], self.net.g_a, x, targets)
        self._med = torch.from_numpy(self.medians).to(self.device)[None, :, None, None]
        cdfs, lengths, offsets = laplace_cdf_tables(targets)
        self.tables = CdfTables(cdfs, lengths, offsets, 16)
        self._indexes = {}

    def _index(self, h: int, w: int) -> np.ndarray:
        idx = self._indexes.get((h, w))
        if idx is None:
            m = self.net.M
            idx = np.ascontiguousarray(
                np.broadcast_to(np.arange(m, dtype=np.int32)[:, None, None], (m, h, w)))
            self._indexes[(h, w)] = idx
        return idx

    @torch.inference_mode()
    def latent_symbols(self, images) -> np.ndarray:
        """int32 ``[B, M, h, w]``: the rounded latent of ``images`` around the medians."""
        with _autocast(self.device, self.dtype):
            y = self.net.g_a(images_to_tensor(images, self.device))
        return torch.round(y.float() - self._med).to(torch.int32).cpu().numpy()

    def encode(self, images) -> Encoded:
        height, width = np.shape(images[0])[:2]
        symbols = self.latent_symbols(images)
        h, w = symbols.shape[2:]
        # one stream per image, one thread: as CompressAI's EntropyBottleneck codes a batch
        streams = self.tables.encode_batch(symbols, self._index(h, w), threads=1)
        return Encoded(streams, int(height), int(width), (int(h), int(w)))

    def decode_symbols(self, enc: Encoded) -> np.ndarray:
        return self.tables.decode_batch(enc.streams, self._index(*enc.latent_hw), threads=1,
                                        shared=True)

    @torch.inference_mode()
    def decode(self, enc: Encoded) -> list:
        symbols = self.decode_symbols(enc)
        y_hat = torch.from_numpy(symbols).to(self.device).float() + self._med
        with _autocast(self.device, self.dtype):
            x_hat = self.net.g_s(y_hat)
        return tensor_to_images(x_hat.float(), enc.height, enc.width)

    def transforms(self) -> list:
        """``[g_a, g_s]``."""
        return [self.net.g_a, self.net.g_s]

    @property
    def latent_channels(self) -> int:
        return self.net.M


# --------------------------------------------------------------------------------------------
# CompressAI's own model


class CompressAIUnavailable(RuntimeError):
    """``compressai.zoo`` does not import here (the message says why)."""


class CompressAIFactorized:
    """CompressAI's ``bmshj2018_factorized(quality, pretrained=False)`` (``N = 128``,
    ``M = 192``), latent spreads set as in the module doc, ``update(force=True)``, then its own
    ``compress()`` / ``decompress()``."""

    key = "compressai-factorized"
    short = "CompressAI factorized"

    def __init__(self, calibration, device="cpu", quality: int = 4, seed: int = SEED,
                 dtype=None) -> None:
        try:
            from compressai.zoo import bmshj2018_factorized  # noqa: PLC0415
        except Exception as exc:  # noqa: BLE001 - any import failure: not usable here
            raise CompressAIUnavailable(f"compressai.zoo does not import: {exc!r}") from None
        self.device = torch.device(device)
        self.dtype = dtype
        self.version = _version("compressai")
        self.label = f"CompressAI {self.version} bmshj2018-factorized (untrained, N=128, M=192)"
        torch.manual_seed(seed)
        self.net = bmshj2018_factorized(quality=quality, pretrained=False).eval().to(self.device)
        x = images_to_tensor(list(calibration), self.device)
        channels = int(self.net.g_a[-1].out_channels)
        _rescale_latent(self.net.g_a[-1], self.net.g_a, x, latent_targets(channels, seed=seed))
        self.net.update(force=True)

    @torch.inference_mode()
    def encode(self, images) -> Encoded:
        height, width = np.shape(images[0])[:2]
        x = images_to_tensor(images, self.device)
        if self.dtype is None:
            out = self.net.compress(x)
        else:  # what compress() does, with the transform under autocast
            with _autocast(self.device, self.dtype):
                y = self.net.g_a(x)
            y = y.float()
            out = {"strings": [self.net.entropy_bottleneck.compress(y)], "shape": y.shape[-2:]}
        h, w = (int(s) for s in out["shape"])
        return Encoded(list(out["strings"][0]), int(height), int(width), (h, w))

    @torch.inference_mode()
    def decode(self, enc: Encoded) -> list:
        if self.dtype is None:
            x_hat = self.net.decompress([enc.streams], enc.latent_hw)["x_hat"]
        else:  # what decompress() does, with the transform under autocast
            y_hat = self.net.entropy_bottleneck.decompress(enc.streams, enc.latent_hw)
            with _autocast(self.device, self.dtype):
                x_hat = self.net.g_s(y_hat).float().clamp_(0, 1)
        return tensor_to_images(x_hat, enc.height, enc.width)

    def transforms(self) -> list:
        """``[g_a, g_s]``."""
        return [self.net.g_a, self.net.g_s]

    @property
    def latent_channels(self) -> int:
        return int(self.net.g_a[-1].out_channels)


def _autocast(device: torch.device, dtype):
    """Autocast of the transforms to ``dtype`` (None: off, float32)."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def load_baseline(calibration, device="cpu", dtype=None):
    """CompressAI's model when ``compressai.zoo`` imports, else :class:`FactorizedReimpl`;
    returns ``(baseline, why_not_compressai or None)``. ``dtype`` (e.g. ``torch.bfloat16``)
    runs the transforms under autocast, as fastcodec's ``transform_dtype`` does."""
    try:
        return CompressAIFactorized(calibration, device, dtype=dtype), None
    except CompressAIUnavailable as exc:
        return FactorizedReimpl(calibration, device, dtype=dtype), str(exc)
