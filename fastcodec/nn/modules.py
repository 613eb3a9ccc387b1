"""Modules wrapping the fused conv ops: drop-in replacements for Conv2d -> ReLU -> pool and
Conv2d -> ReLU -> PixelShuffle.

Their parameters are exactly those of the ``nn.Conv2d`` they replace (``weight`` and, when
``bias=True``, ``bias``), with the same shapes, state_dict keys and default initialisation, so a
Conv2d's state_dict loads into them (and back).
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor, fx, nn
from torch.nn import init

from fastcodec.ops import _validate as V
from fastcodec.ops import conv_relu_pool, conv_relu_upsample
from fastcodec.ops._backend import BACKENDS

__all__ = ["ConvReLUPool2d", "ConvReLUUpsample2d"]

# torch.fx.symbolic_trace records the fused ops as calls (their checks need real tensors).
fx.wrap("conv_relu_pool")
fx.wrap("conv_relu_upsample")


def _check_backend(backend, what: str) -> None:
    """At construction, so that a typo fails there and not at the first forward."""
    if backend is not None and not isinstance(backend, str):
        raise TypeError(f"{what}: backend must be a str or None, got {type(backend).__name__}")
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"{what}: unknown backend {backend!r}; expected one of {BACKENDS} or None")


class _FusedConvBase(nn.Module):
    """Holds the conv parameters; ``reset_parameters`` is ``nn.Conv2d``'s."""

    weight: Tensor
    bias: Optional[Tensor]

    def _init_conv(
        self,
        in_channels: int,
        conv_out_channels: int,
        kernel_size,
        padding,
        bias: bool,
        device,
        dtype,
    ) -> None:
        for name, v in (("in_channels", in_channels), ("out_channels", conv_out_channels)):
            if not V._is_int(v) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.in_channels = int(in_channels)
        self.kernel_size = V.normalize_kernel_size(kernel_size)
        self.padding = V.normalize_padding(padding)
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(
            torch.empty((conv_out_channels, in_channels, *self.kernel_size), **factory)
        )
        if bias:
            self.bias = nn.Parameter(torch.empty(conv_out_channels, **factory))
        else:
            self.register_parameter("bias", None)
        self.backend: Optional[str] = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The default initialisation of ``nn.Conv2d`` (same random stream, same values)."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            if fan_in != 0:
                bound = 1 / math.sqrt(fan_in)
                init.uniform_(self.bias, -bound, bound)

    @staticmethod
    def _conv_args(conv: nn.Conv2d, what: str):
        """Checks that ``conv`` is a plain fusable Conv2d; returns (kernel, stride, padding)."""
        if not isinstance(conv, nn.Conv2d):
            raise ValueError(f"{what}: expected an nn.Conv2d, got {type(conv).__name__}")
        if type(conv).forward is not nn.Conv2d.forward:
            raise ValueError(f"{what}: {type(conv).__name__} overrides Conv2d.forward")
        if type(conv)._conv_forward is not nn.Conv2d._conv_forward:  # e.g. weight standardisation
            raise ValueError(f"{what}: {type(conv).__name__} overrides Conv2d._conv_forward")
        if conv.groups != 1:
            raise ValueError(f"{what}: conv has groups={conv.groups}; only groups=1 is supported")
        if tuple(conv.dilation) != (1, 1):
            raise ValueError(f"{what}: conv has dilation={conv.dilation}; only 1 is supported")
        if conv.padding_mode != "zeros":
            raise ValueError(
                f"{what}: conv has padding_mode={conv.padding_mode!r}; only 'zeros' is supported"
            )
        try:
            from torch.nn.utils import parametrize

            if parametrize.is_parametrized(conv):
                raise ValueError(f"{what}: conv has parametrizations (e.g. weight norm)")
        except ImportError:  # pragma: no cover - very old torch
            pass
        if _has_hooks(conv):
            raise ValueError(f"{what}: conv has module hooks (e.g. old-style weight_norm)")
        kernel = tuple(conv.kernel_size)
        V.check_kernel_extent(*kernel)
        stride = V.normalize_stride(conv.stride)
        padding = conv.padding if isinstance(conv.padding, str) else tuple(conv.padding)
        V.resolve_padding(padding, kernel[0], kernel[1], stride)
        return kernel, stride, V.normalize_padding(padding)

    @staticmethod
    def _check_relu(relu, what: str) -> None:
        if relu is None:  # the caller guarantees a functional ReLU
            return
        if not isinstance(relu, nn.ReLU) or type(relu).forward is not nn.ReLU.forward:
            raise ValueError(f"{what}: expected an nn.ReLU, got {type(relu).__name__}")
        if _has_hooks(relu):
            raise ValueError(f"{what}: the ReLU has module hooks")

    def _adopt(self, conv: nn.Conv2d) -> None:
        """Shares ``conv``'s parameters (no copy: training the fused module trains them)."""
        self.weight = conv.weight
        if conv.bias is None:
            self.register_parameter("bias", None)
        else:
            self.bias = conv.bias


class ConvReLUPool2d(_FusedConvBase):
    """``pool(relu(conv2d(x)))`` in one kernel: the fused form of
    ``nn.Conv2d(in, out, k, stride, padding, bias) -> nn.ReLU -> nn.MaxPool2d(pool_size)``
    (or ``nn.AvgPool2d(pool_size)`` with ``pool="avg"``).

    Args:
        in_channels, out_channels, kernel_size (1..7, int or pair), stride (1 or 2), padding
            (int, pair, "valid" or "same"), bias, device, dtype: as in ``nn.Conv2d``.
        pool: ``"max"`` or ``"avg"``.
        pool_size: pooling window (= pooling stride), >= 1.
        backend: the backend of :func:`fastcodec.ops.conv_relu_pool` (None: default / env var;
            an unknown name raises ValueError here); also a plain attribute, ``module.backend``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        bias: bool = True,
        pool: str = "max",
        pool_size: int = 2,
        device=None,
        dtype=None,
        *,
        backend: Optional[str] = None,
    ) -> None:
        super().__init__()
        _check_backend(backend, type(self).__name__)
        self.stride = V.normalize_stride(stride)
        self.pool = V.normalize_pool(pool)
        self.pool_size = V.normalize_pool_size(pool_size)
        kh, kw = V.normalize_kernel_size(kernel_size)
        V.resolve_padding(padding, kh, kw, self.stride)  # rejects "same" with stride 2
        self._init_conv(in_channels, out_channels, kernel_size, padding, bias, device, dtype)
        self.out_channels = int(out_channels)
        self.backend = backend

    def forward(self, x: Tensor) -> Tensor:
        return conv_relu_pool(
            x,
            self.weight,
            self.bias,
            stride=self.stride,
            padding=self.padding,
            pool=self.pool,
            pool_size=self.pool_size,
            backend=self.backend,
        )

    @classmethod
    def from_modules(cls, conv: nn.Conv2d, relu: Optional[nn.ReLU], pool: nn.Module):
        """The fused module equivalent to ``pool(relu(conv(x)))``, sharing ``conv``'s parameters.

        ``pool`` is an ``nn.MaxPool2d`` or ``nn.AvgPool2d`` with a square window equal to its
        stride, no padding, no dilation, ``ceil_mode=False`` (and for max pooling
        ``return_indices=False``, for average pooling ``divisor_override=None``).
        ``relu`` may be None when the caller applies the ReLU functionally. ValueError otherwise.
        """
        what = f"{cls.__name__}.from_modules"
        kernel, stride, padding = cls._conv_args(conv, what)
        cls._check_relu(relu, what)
        kind, size = _pool_args(pool, what)
        m = cls.__new__(cls)
        nn.Module.__init__(m)
        m.in_channels, m.out_channels = conv.in_channels, conv.out_channels
        m.kernel_size, m.stride, m.padding = kernel, stride, padding
        m.pool, m.pool_size = kind, size
        m.backend = None
        m._adopt(conv)
        return m

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding!r}"
        )
        if self.bias is None:
            s += ", bias=False"
        s += f", pool={self.pool!r}, pool_size={self.pool_size}"
        if self.backend is not None:
            s += f", backend={self.backend!r}"
        return s


class ConvReLUUpsample2d(_FusedConvBase):
    """``pixel_shuffle(relu(conv2d(x)), scale)`` in one kernel: the fused form of
    ``nn.Conv2d(in, out * scale**2, k, 1, padding, bias) -> nn.ReLU -> nn.PixelShuffle(scale)``.

    ``weight`` is ``[out_channels * scale**2, in_channels, kH, kW]`` (the Conv2d's).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        padding=0,
        bias: bool = True,
        scale: int = 2,
        device=None,
        dtype=None,
        *,
        backend: Optional[str] = None,
    ) -> None:
        super().__init__()
        _check_backend(backend, type(self).__name__)
        self.scale = V.normalize_scale(scale)
        if not V._is_int(out_channels) or out_channels < 1:
            raise ValueError(f"out_channels must be a positive int, got {out_channels!r}")
        self.out_channels = int(out_channels)
        self._init_conv(
            in_channels,
            self.out_channels * self.scale**2,
            kernel_size,
            padding,
            bias,
            device,
            dtype,
        )
        self.backend = backend

    def forward(self, x: Tensor) -> Tensor:
        return conv_relu_upsample(
            x,
            self.weight,
            self.bias,
            padding=self.padding,
            scale=self.scale,
            backend=self.backend,
        )

    @classmethod
    def from_modules(cls, conv: nn.Conv2d, relu: Optional[nn.ReLU], pixel_shuffle: nn.Module):
        """The fused module equivalent to ``pixel_shuffle(relu(conv(x)))``, sharing ``conv``'s
        parameters. ``conv`` must have stride 1 and ``out_channels`` divisible by scale**2;
        ``relu`` may be None (functional ReLU). ValueError otherwise."""
        what = f"{cls.__name__}.from_modules"
        kernel, stride, padding = cls._conv_args(conv, what)
        if stride != 1:
            raise ValueError(f"{what}: conv has stride {conv.stride}; upsampling needs stride 1")
        cls._check_relu(relu, what)
        if not isinstance(pixel_shuffle, nn.PixelShuffle) or (
            type(pixel_shuffle).forward is not nn.PixelShuffle.forward
        ):
            raise ValueError(
                f"{what}: expected an nn.PixelShuffle, got {type(pixel_shuffle).__name__}"
            )
        if _has_hooks(pixel_shuffle):
            raise ValueError(f"{what}: the PixelShuffle has module hooks")
        scale = V.normalize_scale(pixel_shuffle.upscale_factor)
        if conv.out_channels % (scale * scale):
            raise ValueError(
                f"{what}: conv.out_channels={conv.out_channels} is not divisible by "
                f"scale**2={scale * scale}"
            )
        m = cls.__new__(cls)
        nn.Module.__init__(m)
        m.in_channels, m.out_channels = conv.in_channels, conv.out_channels // (scale * scale)
        m.kernel_size, m.padding, m.scale = kernel, padding, scale
        m.backend = None
        m._adopt(conv)
        return m

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"padding={self.padding!r}"
        )
        if self.bias is None:
            s += ", bias=False"
        s += f", scale={self.scale}"
        if self.backend is not None:
            s += f", backend={self.backend!r}"
        return s


def _has_hooks(m: nn.Module) -> bool:
    """Forward (pre-)hooks or backward (pre-)hooks of its own: the fused module would drop them."""
    return any(
        getattr(m, attr, None)
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    )


def _square(v, what: str, name: str) -> int:
    a, b = V._int_pair(v, f"{what}: pool {name}")
    if a != b:
        raise ValueError(f"{what}: the pool {name} must be square, got {v!r}")
    return a


def _pool_args(pool: nn.Module, what: str) -> Tuple[str, int]:
    """Checks a pooling module is fusable; returns ``(kind, window)``."""
    if isinstance(pool, nn.MaxPool2d) and type(pool).forward is nn.MaxPool2d.forward:
        kind = "max"
        if _square(pool.dilation, what, "dilation") != 1:
            raise ValueError(f"{what}: MaxPool2d with dilation {pool.dilation} is not supported")
        if pool.return_indices:
            raise ValueError(f"{what}: MaxPool2d with return_indices=True is not supported")
    elif isinstance(pool, nn.AvgPool2d) and type(pool).forward is nn.AvgPool2d.forward:
        kind = "avg"
        if pool.divisor_override is not None:
            raise ValueError(f"{what}: AvgPool2d with divisor_override is not supported")
        # count_include_pad only matters with padding, which is rejected below.
    else:
        raise ValueError(
            f"{what}: expected an nn.MaxPool2d or nn.AvgPool2d, got {type(pool).__name__}"
        )
    if _has_hooks(pool):
        raise ValueError(f"{what}: the pooling module has module hooks")
    size = _square(pool.kernel_size, what, "kernel_size")
    stride = size if pool.stride is None or pool.stride == () else _square(
        pool.stride, what, "stride"
    )
    if stride != size:
        raise ValueError(
            f"{what}: the pool stride ({pool.stride}) must equal its window ({pool.kernel_size})"
        )
    if _square(pool.padding, what, "padding") != 0:
        raise ValueError(f"{what}: pooling with padding ({pool.padding}) is not supported")
    if pool.ceil_mode:
        raise ValueError(f"{what}: pooling with ceil_mode=True is not supported")
    V.normalize_pool_size(size)
    return kind, size
