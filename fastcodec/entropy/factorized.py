"""A learned factorized prior: one non-parametric density per latent channel, and its export to
the integer CDF tables the range coder uses.

The density model is the one of Ballé et al., "Variational image compression with a scale
hyperprior" (ICLR 2018), appendix 6.1. For each channel ``c`` the cumulative distribution is a
small MLP ``R -> R`` that is monotone by construction::

    f_k(x) = h_k(H_k x + b_k)              k = 1..K          (K = len(filters) + 1)
    h_k(x) = x + tanh(a_k) * tanh(x)       k < K             (the identity for the last layer)
    H_k    = softplus(H'_k)                (positive matrices)
    cdf(x) = sigmoid(f_K(...f_1(x)))

``softplus`` keeps the matrices positive and ``tanh(a_k) >= -1`` keeps each ``h_k`` monotone, so
the composition is a non-decreasing function; the network returns its *logits* (the argument of
the sigmoid), from which probabilities of intervals are computed without cancellation.

Variable-rate use: the codec multiplies the latent ``y`` by a positive per-channel gain ``g``
before quantizing (see :mod:`fastcodec.models.codec_model`). The model here is a density of the
*unscaled* ``y``: the probability of the integer bin ``[v - 1/2, v + 1/2)`` of ``y * g`` is
``cdf((v + 1/2) / g) - cdf((v - 1/2) / g)``. One learned density thus serves every gain, the
continuous ones between the trained gains included.

Medians and support: three per-channel quantiles ``q = (lo, median, hi)`` with
``cdf(lo) = tail/2``, ``cdf(median) = 1/2``, ``cdf(hi) = 1 - tail/2`` are parameters fitted by
:meth:`FactorizedPrior.aux_loss` (``|logits(q) - target|`` with the MLP frozen, so this loss
moves the quantiles only). At inference symbols are ``round(y*g - median*g)``; the tables cover
the integers between the scaled quantiles, everything outside is coded through the escape bin.

Export (:meth:`FactorizedPrior.export_tables`): the pmf of each channel is evaluated once, in
float64, on its integer support, the remaining probability becomes the escape bin, and the row
is quantized to integers with :func:`fastcodec.entropy.cdf.pmf_to_quantized_cdf`. The integers
(with the float32 medians that only shift reconstructions) are what a codec stores and what both
encoder and decoder use; decoding never evaluates the network, so streams parse identically on
every machine whatever its floating-point behaviour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastcodec.entropy.cdf import pack_cdfs, pmf_to_quantized_cdf

__all__ = ["EntropyTables", "FactorizedPrior", "lower_bound"]


class _LowerBound(torch.autograd.Function):
    """``max(x, bound)`` whose gradient still flows where it would push ``x`` up above the bound
    (a plain clamp would leave likelihoods stuck at the bound with zero gradient)."""

    @staticmethod
    def forward(ctx, x: Tensor, bound: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (x,) = ctx.saved_tensors
        pass_through = (x >= ctx.bound) | (grad < 0)
        return grad * pass_through.to(grad.dtype), None


def lower_bound(x: Tensor, bound: float) -> Tensor:
    return _LowerBound.apply(x, bound)


@dataclass
class EntropyTables:
    """Integer tables for one gain vector, in the range coder's convention.

    ``cdfs`` int32 ``[C, L]`` (rows padded by repeating their last entry), ``cdf_lengths`` int32
    ``[C]`` (regular symbols + escape bin + 1), ``offsets`` int32 ``[C]`` (symbol value of each
    row's first bin), ``medians`` float32 ``[C]`` (the scaled medians added back to decoded
    symbols), ``precision`` (bits).
    """

    cdfs: np.ndarray
    cdf_lengths: np.ndarray
    offsets: np.ndarray
    medians: np.ndarray
    precision: int = 16

    def coder(self):
        from fastcodec.rangecoder import CdfTables

        return CdfTables(self.cdfs, self.cdf_lengths, self.offsets, self.precision)


class FactorizedPrior(nn.Module):
    """Per-channel learned density of a latent with ``channels`` channels.

    Args:
        channels: number of latent channels ``C``.
        filters: hidden widths of the per-channel CDF network (Ballé et al. use (3, 3, 3)).
        init_scale: initial spread of the density (and of the quantiles).
        tail_mass: probability left outside ``[lo, hi]`` (goes to the escape bin).
        likelihood_bound: smallest likelihood returned in training (keeps ``-log2`` finite).
    """

    def __init__(
        self,
        channels: int,
        filters: Sequence[int] = (3, 3, 3),
        init_scale: float = 10.0,
        tail_mass: float = 1e-9,
        likelihood_bound: float = 1e-9,
    ) -> None:
        super().__init__()
        self.channels = int(channels)
        self.filters = tuple(int(f) for f in filters)
        self.init_scale = float(init_scale)
        self.tail_mass = float(tail_mass)
        self.likelihood_bound = float(likelihood_bound)

        dims = (1,) + self.filters + (1,)
        scale = self.init_scale ** (1.0 / (len(self.filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for k in range(len(dims) - 1):
            # softplus(init) * fan-in = 1/scale per layer: the initial cdf is a sigmoid of x/init_scale
            init = math.log(math.expm1(1.0 / scale / dims[k + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[k + 1], dims[k]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[k + 1], 1) - 0.5))
            if k < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[k + 1], 1)))

        t = math.log(2.0 / self.tail_mass - 1.0)
        self.quantiles = nn.Parameter(
            torch.tensor([-self.init_scale, 0.0, self.init_scale]).repeat(channels, 1, 1)
        )
        self.register_buffer("target", torch.tensor([-t, 0.0, t]), persistent=False)

    # ------------------------------------------------------------------ density
    def logits_cdf(self, x: Tensor, stop_gradient: bool = False, dtype=None) -> Tensor:
        """Logits of the per-channel CDF at ``x [C, 1, N]`` -> ``[C, 1, N]``.

        ``stop_gradient`` detaches the network (used by the auxiliary loss); ``dtype`` evaluates
        it in another precision (float64 for the table export)."""
        n_layers = len(self.matrices)
        for k in range(n_layers):
            h, b = self.matrices[k], self.biases[k]
            if stop_gradient:
                h, b = h.detach(), b.detach()
            if dtype is not None:
                h, b = h.to(dtype), b.to(dtype)
            x = torch.matmul(F.softplus(h), x) + b
            if k < n_layers - 1:
                a = self.factors[k]
                if stop_gradient:
                    a = a.detach()
                if dtype is not None:
                    a = a.to(dtype)
                x = x + torch.tanh(a) * torch.tanh(x)
        return x

    def _interval(self, lower: Tensor, upper: Tensor, stop_gradient=False, dtype=None):
        """``cdf(upper) - cdf(lower)`` for ``[C, 1, N]`` edges, free of cancellation: both
        logits are mirrored to the side of the median where the sigmoid is small."""
        lo = self.logits_cdf(lower, stop_gradient, dtype)
        up = self.logits_cdf(upper, stop_gradient, dtype)
        sign = torch.where(lo + up > 0, -1.0, 1.0).to(lo.dtype).detach()
        return torch.abs(torch.sigmoid(sign * up) - torch.sigmoid(sign * lo))

    def likelihood(self, values: Tensor, gain: Optional[Tensor] = None) -> Tensor:
        """Likelihood of ``values [B, C, ...]`` of the *scaled* latent ``y * gain``: the mass of
        ``[v - 1/2, v + 1/2]`` under the density of ``y * gain``. Use noisy values
        (``y*g + U(-1/2, 1/2)``) in training, quantized ones (``round(y*g - m) + m``) at
        inference. ``gain`` broadcasts against ``values`` (e.g. ``[B, C, 1, 1]``); None is 1.
        Computed in float32 (outside any autocast region)."""
        shape = values.shape
        with torch.autocast(values.device.type, enabled=False):
            v = values.float()
            lower, upper = v - 0.5, v + 0.5
            if gain is not None:
                g = gain.float()
                lower, upper = lower / g, upper / g
            c = shape[1]
            perm = (1, 0) + tuple(range(2, len(shape)))
            lower = lower.permute(perm).reshape(c, 1, -1)
            upper = upper.permute(perm).reshape(c, 1, -1)
            lik = self._interval(lower, upper)
            lik = lik.reshape((c, shape[0]) + tuple(shape[2:])).permute(perm)
            if self.likelihood_bound > 0:
                lik = lower_bound(lik, self.likelihood_bound)
        return lik

    def medians(self) -> Tensor:
        """Per-channel medians ``[C]`` of the unscaled latent (detached)."""
        return self.quantiles[:, 0, 1].detach()

    def aux_loss(self) -> Tensor:
        """Fits the quantiles to the current density (gradients reach ``quantiles`` only)."""
        logits = self.logits_cdf(self.quantiles, stop_gradient=True)
        return torch.abs(logits - self.target.to(logits.dtype)).sum()

    @torch.no_grad()
    def fit_quantiles(self, iterations: int = 100) -> float:
        """Sets the quantiles to the exact solutions of ``logits_cdf(q) = target`` (the optimum
        the auxiliary loss approaches by gradient descent), by bisection in float64: the logits
        are non-decreasing in ``x``, so each root is bracketed and halved ``iterations`` times.
        Used before export so the medians and the table supports follow the final density.
        Returns the auxiliary loss after the fit (about 0 unless a root lies beyond ±1e6)."""
        c = self.channels
        target = self.target.to(torch.float64).reshape(1, 1, 3).expand(c, 1, 3)

        def logits(x: Tensor) -> Tensor:
            return self.logits_cdf(x, True, torch.float64)

        lo = torch.full((c, 1, 3), -1.0, dtype=torch.float64, device=self.quantiles.device)
        hi = -lo
        for _ in range(20):  # widen the brackets (x 4 each time, up to ~1e12)
            lo = torch.where(logits(lo) > target, lo * 4, lo)
            hi = torch.where(logits(hi) < target, hi * 4, hi)
        for _ in range(int(iterations)):
            mid = 0.5 * (lo + hi)
            below = logits(mid) < target
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        self.quantiles.copy_((0.5 * (lo + hi)).to(self.quantiles.dtype))
        return float(self.aux_loss())

    # ------------------------------------------------------------------ export
    @torch.no_grad()
    def export_tables(
        self,
        gain: Optional[Tensor] = None,
        precision: int = 16,
        max_symbols: int = 4095,
    ) -> EntropyTables:
        """Integer CDF tables of the quantized latent ``round(y*g - median*g)`` per channel.

        Row ``c`` covers the integers ``floor((lo - m) g) .. ceil((hi - m) g)`` (at most
        ``max_symbols`` of them, kept centred on 0), their probabilities
        ``cdf((v + m g + 1/2)/g) - cdf((v + m g - 1/2)/g)`` are evaluated in float64, the mass
        outside the support is appended as the escape bin, and the row is quantized with
        :func:`pmf_to_quantized_cdf`. ``gain``: positive ``[C]`` (None: all ones).
        """
        c = self.channels
        dev = self.quantiles.device
        g = torch.ones(c, dtype=torch.float64, device=dev) if gain is None else (
            gain.detach().to(device=dev, dtype=torch.float64).reshape(c)
        )
        if torch.any(g <= 0) or not torch.all(torch.isfinite(g)):
            raise ValueError("gains must be finite and positive")
        q = self.quantiles.detach().to(torch.float64)[:, 0, :]
        # the medians as they will be stored (float32) are the ones the pmf is centred on
        med32 = (q[:, 1].float() * g.float()).cpu().numpy().astype(np.float32)
        med = torch.from_numpy(med32.astype(np.float64)).to(dev)
        lo = torch.minimum(q[:, 0], q[:, 1]) * g - med
        hi = torch.maximum(q[:, 2], q[:, 1]) * g - med
        half = (max_symbols - 1) // 2
        start = torch.clamp(torch.floor(lo), min=-half, max=0).long()
        end = torch.clamp(torch.ceil(hi), min=0, max=half).long()
        n = (end - start + 1).cpu().numpy()
        width = int(n.max())
        v = start[:, None] + torch.arange(width, device=dev)[None, :]  # [C, width]
        centre = v.to(torch.float64) + med[:, None]
        lower = ((centre - 0.5) / g[:, None]).unsqueeze(1)
        upper = ((centre + 0.5) / g[:, None]).unsqueeze(1)
        pmf = self._interval(lower, upper, True, torch.float64)[:, 0, :].cpu().numpy()
        # tails: below the first bin's lower edge and above the last bin's upper edge
        first = ((start.to(torch.float64) + med - 0.5) / g).reshape(c, 1, 1)
        last = ((end.to(torch.float64) + med + 0.5) / g).reshape(c, 1, 1)
        low_tail = torch.sigmoid(self.logits_cdf(first, True, torch.float64)).reshape(c)
        high_tail = torch.sigmoid(-self.logits_cdf(last, True, torch.float64)).reshape(c)
        tails = (low_tail + high_tail).cpu().numpy()
        rows = []
        for i in range(c):
            p = np.append(pmf[i, : n[i]], tails[i])
            p = np.where(np.isfinite(p), np.maximum(p, 0.0), 0.0)
            if p.sum() <= 0:
                p[:] = 1.0
            rows.append(pmf_to_quantized_cdf(p, precision))
        cdfs, lengths = pack_cdfs(rows)
        return EntropyTables(
            cdfs=cdfs,
            cdf_lengths=lengths,
            offsets=start.cpu().numpy().astype(np.int32),
            medians=med32,
            precision=int(precision),
        )
