"""The learned image codec: fused-conv transforms, a factorized prior and variable-rate gains.

Pipeline (``x`` float RGB in [0, 1], ``[B, 3, H, W]``)::

    x --pad to 16k--> g_a --> y --*gain_q--> round(. - m_q) --> symbols (range coded per image)
    symbols + m_q --*inv_gain_q--> g_s --> crop --> x_hat

Variable rate (gain units, Cui et al. 2021, "Asymmetric gained deep image compression with
continuous rate adaptation"): one model is trained for ``K`` rate-distortion trade-offs
``lambdas`` (loss ``lambda * 255^2 * MSE + bpp``). Quality ``k`` owns a positive gain vector
``g_k [M]`` applied to the latent before quantization and an inverse gain ``ig_k [M]`` applied
after; both are learned (stored as logs). A fractional quality ``q = k + t`` (``0 <= t <= 1``)
uses the geometric interpolation ``g = g_k^(1-t) g_{k+1}^t`` (the same for ``ig``), which gives
rates between those of the neighbours. Qualities run from 0 (lowest rate) to ``K - 1``.

The prior is a density of the *unscaled* latent ``y`` (:class:`FactorizedPrior`); the bins of
``y * g`` are mapped back through ``1/g``, so one density serves every quality, fractional ones
included. Tables for a quality come from :meth:`CodecModel.export_tables` (integers, computed
once and cached; :meth:`tables_state` / :meth:`load_tables_state` store and restore them so a
decoder uses stored integers rather than re-evaluating the network).
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastcodec.entropy.factorized import EntropyTables, FactorizedPrior
from fastcodec.models.transforms import AnalysisTransform, SynthesisTransform

__all__ = ["CodecModel", "DEFAULT_LAMBDAS", "pad_to_multiple"]

#: Rate-distortion trade-offs of the trained qualities (loss ``lambda * 255^2 * MSE + bpp``),
#: lowest rate first, a factor ~2.35 apart: about 0.1 to 1.5 bpp on natural images for a
#: well-trained factorized-prior model (CompressAI trains its bmshj2018 qualities 1 to 8 for
#: 0.0018 to 0.18). ``fcf64-v1`` / ``fcf64-v2`` were trained for (0.0018, 0.0035, 0.0067, 0.013,
#: 0.025, 0.0483): their files carry their own values.
DEFAULT_LAMBDAS: Tuple[float, ...] = (0.0018, 0.0042, 0.0099, 0.0235, 0.055, 0.13)

_MULTIPLE = 16


def pad_to_multiple(x: Tensor, multiple: int = _MULTIPLE, mode: str = "replicate") -> Tensor:
    """Pads ``x [B, C, H, W]`` at the bottom/right to multiples of ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    if mode == "reflect" and (ph >= h or pw >= w):
        mode = "replicate"  # reflect needs the pad to be smaller than the side
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def _scale_grad(t: Tensor, w: Tensor) -> Tensor:
    """``t`` unchanged in value, its gradient multiplied by ``w`` (broadcast)."""
    return t * w + (t * (1 - w)).detach()


class CodecModel(nn.Module):
    """Learned image codec.

    Args:
        N: hidden width of the transforms.
        M: latent channels.
        pool: ``"avg"`` or ``"max"`` pooling in the analysis blocks.
        lambdas: rate-distortion trade-offs of the trained qualities (ascending).
        analysis_kernels, synthesis_kernels: kernel sizes of the four fused blocks of each side.
        first_width: output width of the first analysis block (None: ``N``).
        skip: linear skip paths around every analysis block and the first three synthesis
            blocks (see :mod:`fastcodec.models.transforms`).
        last_width: output width of the last upsampling block (None: ``N // 2``).
        head_width: output width of the fourth analysis block, the head's input (None: ``N``;
            about ``M`` lets the latent use all its channels).
        analysis_width: hidden width of the analysis's reduced-resolution layers (the outputs
            of its second and third blocks; None: ``N``, which then sizes the synthesis only).
            A wider encoder costs encode time only.
        backend: backend of the fused ops (None: the default for the device).
        quantize: how the decoder sees the latent in training: ``"ste"`` (rounded around the
            medians, straight-through gradient) or ``"noise"`` (the same noisy latent the
            likelihood sees). The likelihood always uses additive uniform noise in training.
    """

    def __init__(
        self,
        N: int = 64,
        M: int = 128,
        pool: str = "avg",
        lambdas: Sequence[float] = DEFAULT_LAMBDAS,
        analysis_kernels: Sequence[int] = (5, 3, 3, 3),
        synthesis_kernels: Sequence[int] = (3, 3, 3, 3),
        last_width: Optional[int] = None,
        backend: Optional[str] = None,
        quantize: str = "ste",
        first_width: Optional[int] = None,
        skip: bool = False,
        head_width: Optional[int] = None,
        analysis_width: Optional[int] = None,
    ) -> None:
        super().__init__()
        lambdas = tuple(float(v) for v in lambdas)
        if len(lambdas) < 2 or any(b <= a for a, b in zip(lambdas, lambdas[1:])):
            raise ValueError(f"lambdas must be at least two increasing values, got {lambdas}")
        if quantize not in ("ste", "noise"):
            raise ValueError(f"quantize must be 'ste' or 'noise', got {quantize!r}")
        self.config = dict(
            N=int(N), M=int(M), pool=pool, lambdas=list(lambdas),
            analysis_kernels=list(analysis_kernels), synthesis_kernels=list(synthesis_kernels),
            last_width=last_width, quantize=quantize, first_width=first_width, skip=bool(skip),
            head_width=head_width, analysis_width=analysis_width,
        )
        self.N, self.M, self.quantize = int(N), int(M), quantize
        analysis_n = int(N) if analysis_width is None else int(analysis_width)
        self.g_a = AnalysisTransform(
            analysis_n, M, analysis_kernels, pool=pool, skip=skip, backend=backend,
            first_width=int(N) if first_width is None else first_width,
            head_width=int(N) if head_width is None else head_width)
        self.g_s = SynthesisTransform(N, M, synthesis_kernels, last_width, skip=skip,
                                      backend=backend)
        self.entropy = FactorizedPrior(M)
        self.register_buffer("lambdas", torch.tensor(lambdas, dtype=torch.float32))
        # gain ~ sqrt(lambda): the quantization step shrinks as the distortion weight grows
        init = 0.5 * torch.log(torch.tensor(lambdas) / lambdas[-1])
        self.log_gain = nn.Parameter(init[:, None].repeat(1, M).clone())
        self.log_inv_gain = nn.Parameter(-init[:, None].repeat(1, M).clone())
        self._tables: Dict[float, EntropyTables] = {}
        #: Training only: ``[M]`` factors in [0, 1] on the gradient the rate term sends into the
        #: latent and the gains of each channel (None: 1 everywhere). Channels revived by
        #: :func:`fastcodec.models.slim.revive` learn to carry information before they pay for
        #: it; the density itself always gets the full gradient. Not part of the weights.
        self.rate_grad_scale: Optional[Tensor] = None

    @classmethod
    def from_config(cls, config: dict, **overrides) -> "CodecModel":
        cfg = dict(config)
        cfg.update(overrides)
        return cls(**cfg)

    @property
    def num_qualities(self) -> int:
        return int(self.lambdas.numel())

    def train(self, mode: bool = True):
        if mode:
            self._tables.clear()  # the tables follow the weights
        return super().train(mode)

    # ------------------------------------------------------------------ gains
    def gains(self, quality: Union[float, int, Tensor]) -> Tuple[Tensor, Tensor]:
        """Gain and inverse gain for ``quality`` in ``[0, K-1]``: a scalar gives ``[M]`` each,
        a tensor ``[B]`` gives ``[B, M]``. Fractional qualities interpolate geometrically."""
        k = self.num_qualities
        q = torch.as_tensor(quality, dtype=torch.float32, device=self.log_gain.device)
        if torch.any(q < 0) or torch.any(q > k - 1) or not torch.all(torch.isfinite(q)):
            raise ValueError(f"quality must be in [0, {k - 1}], got {quality!r}")
        i = torch.clamp(torch.floor(q), max=k - 2).long()
        t = (q - i.float()).unsqueeze(-1)
        lg = self.log_gain[i] * (1 - t) + self.log_gain[i + 1] * t
        lig = self.log_inv_gain[i] * (1 - t) + self.log_inv_gain[i + 1] * t
        return torch.exp(lg), torch.exp(lig)

    def lambda_of(self, quality: Union[float, int, Tensor]) -> Tensor:
        """The trade-off a quality stands for (geometric interpolation of ``lambdas``)."""
        k = self.num_qualities
        q = torch.as_tensor(quality, dtype=torch.float32, device=self.lambdas.device)
        i = torch.clamp(torch.floor(q), max=k - 2).long()
        t = q - i.float()
        return torch.exp(torch.log(self.lambdas[i]) * (1 - t) + torch.log(self.lambdas[i + 1]) * t)

    # ------------------------------------------------------------------ training / estimation
    def forward(self, x: Tensor, quality_index: Union[int, float, Tensor]) -> dict:
        """``x [B, 3, H, W]`` in [0, 1]; ``quality_index`` a scalar or ``[B]`` (ints in training,
        fractional allowed). Returns ``x_hat`` (cropped to ``H x W``, unclamped),
        ``likelihoods [B, M, h, w]``, ``bpp [B]`` (from the likelihoods), ``y`` and ``aux_loss``.

        Training: the likelihood sees ``y*g + U(-1/2, 1/2)``; eval: the rounded latent (so
        ``bpp`` estimates the coded size). Inputs of any size are padded to multiples of 16."""
        b, _, h, w = x.shape
        y = self.g_a(pad_to_multiple(x))
        q = torch.as_tensor(quality_index, device=y.device)
        if q.dim() == 0:
            q = q.expand(b)
        g, ig = self.gains(q)
        g, ig = g[:, :, None, None], ig[:, :, None, None]
        yg = y.float() * g
        med = self.entropy.medians()[None, :, None, None] * g.detach()
        if self.training:
            noisy = yg + torch.empty_like(yg).uniform_(-0.5, 0.5)
            if self.rate_grad_scale is None:
                lik = self.entropy.likelihood(noisy, g)
            else:
                rw = self.rate_grad_scale.to(yg)[None, :, None, None]
                lik = self.entropy.likelihood(_scale_grad(noisy, rw), _scale_grad(g, rw))
            if self.quantize == "ste":
                y_q = yg + (torch.round(yg - med) + med - yg).detach()
            else:
                y_q = noisy
        else:
            y_q = torch.round(yg - med) + med
            lik = self.entropy.likelihood(y_q, g)
        x_hat = self.g_s((y_q * ig).to(y.dtype))[:, :, :h, :w]
        bits = -torch.log2(lik).flatten(1).sum(1)
        return {
            "x_hat": x_hat,
            "likelihoods": lik,
            "bpp": bits / (h * w),
            "y": y,
            "aux_loss": self.entropy.aux_loss(),
        }

    # ------------------------------------------------------------------ tables
    @staticmethod
    def _key(quality: float) -> float:
        return round(float(quality), 6)

    def export_tables(self, quality: float, precision: int = 16) -> EntropyTables:
        """Integer tables for ``quality`` (cached until the model trains again)."""
        key = self._key(quality)
        tables = self._tables.get(key)
        if tables is None or tables.precision != precision:
            g, _ = self.gains(key)
            tables = self.entropy.export_tables(g, precision)
            self._tables[key] = tables
        return tables

    def tables_state(self, qualities: Optional[Sequence[float]] = None) -> dict:
        """The integer tables (and medians) for ``qualities`` (default: the trained ones), as
        plain numpy arrays to store next to the weights."""
        if qualities is None:
            qualities = range(self.num_qualities)
        out = {}
        for q in qualities:
            t = self.export_tables(q)
            out[self._key(q)] = dict(
                cdfs=t.cdfs, cdf_lengths=t.cdf_lengths, offsets=t.offsets, medians=t.medians,
                precision=t.precision,
            )
        return out

    def load_tables_state(self, state: dict) -> None:
        """Installs stored tables: coding at those qualities then uses exactly these integers."""
        for q, t in state.items():
            self._tables[self._key(q)] = EntropyTables(
                np.asarray(t["cdfs"], np.int32), np.asarray(t["cdf_lengths"], np.int32),
                np.asarray(t["offsets"], np.int32), np.asarray(t["medians"], np.float32),
                int(t["precision"]),
            )

    # ------------------------------------------------------------------ coding
    @torch.no_grad()
    def compress_latents(self, x: Tensor, quality: float) -> Tuple[np.ndarray, dict]:
        """Quantized latents of ``x [B, 3, H, W]``: int32 symbols ``[B, M, h, w]`` (offsets from
        the medians) and the shape info ``decompress_latents`` needs."""
        quality = self._key(quality)
        h, w = x.shape[-2:]
        tables = self.export_tables(quality)
        y = self.g_a(pad_to_multiple(x)).float()
        g, _ = self.gains(quality)
        yg = y * g[None, :, None, None]
        med = torch.from_numpy(tables.medians).to(y.device)[None, :, None, None]
        symbols = torch.round(yg - med).to(torch.int32).cpu().numpy()
        info = dict(height=int(h), width=int(w), quality=float(quality),
                    latent_shape=tuple(int(s) for s in symbols.shape[1:]))
        return symbols, info

    @torch.no_grad()
    def decompress_latents(self, symbols, info: dict) -> Tensor:
        """``x_hat [B, 3, H, W]`` (clamped to [0, 1]) from the symbols of ``compress_latents``."""
        tables = self.export_tables(info["quality"])
        dev = self.log_gain.device
        s = torch.as_tensor(np.asarray(symbols, np.int32), device=dev).float()
        med = torch.from_numpy(tables.medians).to(dev)[None, :, None, None]
        _, ig = self.gains(info["quality"])
        y_hat = (s + med) * ig[None, :, None, None]
        x_hat = self.g_s(y_hat)[:, :, : info["height"], : info["width"]]
        return x_hat.clamp(0.0, 1.0)

    def _indexes(self, latent_shape) -> np.ndarray:
        m, h, w = latent_shape
        return np.broadcast_to(np.arange(m, dtype=np.int32)[:, None, None], (m, h, w))

    def encode_symbols(self, symbols: np.ndarray, quality: float, threads=None) -> list:
        """One range-coder stream per image of ``symbols [B, M, h, w]`` (table = channel)."""
        sym = np.ascontiguousarray(symbols, dtype=np.int32)
        coder = self.export_tables(quality).coder()
        return coder.encode_batch(sym, self._indexes(sym.shape[1:]), threads)

    def decode_symbols(self, streams, info: dict, threads=None) -> np.ndarray:
        """Inverse of :meth:`encode_symbols`: int32 ``[B, M, h, w]``."""
        coder = self.export_tables(info["quality"]).coder()
        return coder.decode_batch(
            list(streams), self._indexes(info["latent_shape"]), threads, shared=True
        )

    def compress(self, x: Tensor, quality: float, threads=None) -> Tuple[list, dict]:
        """``x [B, 3, H, W]`` -> (one stream per image, shape info)."""
        symbols, info = self.compress_latents(x, quality)
        return self.encode_symbols(symbols, quality, threads), info

    def decompress(self, streams, info: dict, threads=None) -> Tensor:
        return self.decompress_latents(self.decode_symbols(streams, info, threads), info)
