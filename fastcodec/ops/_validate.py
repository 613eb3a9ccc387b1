"""Argument checks and geometry shared by the fused conv ops and their modules.

Everything here is plain Python on ints / tensor metadata, so it traces under ``torch.compile``
(shape checks become guards) and the same helpers compute the shapes of the fake (meta)
implementations registered with ``torch.library``.

Geometry conventions (the launchers' contract):

* padding is resolved to ``(pad_top, pad_bottom, pad_left, pad_right)``; only ``"same"`` with an
  even kernel gives asymmetric padding, exactly like ``F.conv2d(padding="same")``: the total
  ``k - 1`` is split as ``top/left = total // 2`` and the remainder goes to the bottom/right;
* ``(out_h, out_w)`` is the size of the convolution output, *before* pooling / pixel shuffle.
"""

from __future__ import annotations

import numbers
from typing import Optional, Tuple, Union

import torch

PaddingArg = Union[int, Tuple[int, int], str]

#: Largest supported kernel extent (each of kh, kw).
MAX_KERNEL_SIZE = 7
#: Supported convolution strides (square only).
SUPPORTED_STRIDES = (1, 2)
#: Pooling kinds of :func:`fastcodec.ops.conv_relu_pool`.
POOL_KINDS = ("max", "avg")
#: dtypes every backend supports.
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
#: dtypes the reference ("torch") backend supports (float64 for gradcheck).
TORCH_BACKEND_DTYPES = KERNEL_DTYPES + (torch.float64,)


def _is_int(v) -> bool:
    # bool is an int subclass but never a meaningful size; torch.SymInt is accepted too.
    return (isinstance(v, numbers.Integral) or isinstance(v, torch.SymInt)) and not isinstance(
        v, bool
    )


def _int_pair(value, name: str) -> Tuple[int, int]:
    """``int`` or a length-2 sequence of ints -> ``(a, b)``; TypeError otherwise."""
    if _is_int(value):
        return int(value), int(value)
    if isinstance(value, (tuple, list, torch.Size)) and len(value) == 2 and all(
        _is_int(v) for v in value
    ):
        return int(value[0]), int(value[1])
    raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")


# --------------------------------------------------------------------------------------------
# Scalar arguments
# --------------------------------------------------------------------------------------------


def normalize_stride(stride) -> int:
    """Accepts ``s`` or ``(s, s)`` with ``s`` in {1, 2}; returns ``s``."""
    sh, sw = _int_pair(stride, "stride")
    if sh != sw:
        raise ValueError(
            f"stride must be the same along height and width (got {stride!r}): the fused "
            "kernels only support square strides"
        )
    if sh not in SUPPORTED_STRIDES:
        raise ValueError(
            f"stride must be 1 or 2, got {stride!r}: the fused kernels only implement those"
        )
    return sh


def normalize_kernel_size(kernel_size) -> Tuple[int, int]:
    """Kernel size (int or pair) of a module constructor, each extent in 1..MAX_KERNEL_SIZE."""
    kh, kw = _int_pair(kernel_size, "kernel_size")
    check_kernel_extent(kh, kw)
    return kh, kw


def check_kernel_extent(kh: int, kw: int) -> None:
    if not (1 <= kh <= MAX_KERNEL_SIZE and 1 <= kw <= MAX_KERNEL_SIZE):
        raise ValueError(
            f"kernel size must be between 1 and {MAX_KERNEL_SIZE} along each dimension, got "
            f"{kh}x{kw}: the fused kernels are unrolled for small filters only"
        )


def normalize_padding(padding: PaddingArg) -> Union[str, Tuple[int, int]]:
    """``"same"`` / ``"valid"`` / int / pair -> ``"same"`` or ``(ph, pw)`` (validated, >= 0)."""
    if isinstance(padding, str):
        if padding == "same":
            return "same"
        if padding == "valid":
            return (0, 0)
        raise ValueError(f"padding must be an int, a pair of ints, 'same' or 'valid', got {padding!r}")
    ph, pw = _int_pair(padding, "padding")
    if ph < 0 or pw < 0:
        raise ValueError(f"padding must be non-negative, got {padding!r}")
    return ph, pw


def resolve_padding(
    padding: PaddingArg, kh: int, kw: int, stride: int
) -> Tuple[int, int, int, int]:
    """-> ``(pad_top, pad_bottom, pad_left, pad_right)``; ``"same"`` only with stride 1."""
    p = normalize_padding(padding)
    if p == "same":
        if stride != 1:
            raise ValueError(
                "padding='same' is only supported with stride 1 (as in F.conv2d), got stride "
                f"{stride}"
            )
        th, tw = kh - 1, kw - 1
        return th // 2, th - th // 2, tw // 2, tw - tw // 2
    ph, pw = p
    return ph, ph, pw, pw


def normalize_pool(pool) -> str:
    if not isinstance(pool, str) or pool not in POOL_KINDS:
        raise ValueError(f"pool must be one of {POOL_KINDS}, got {pool!r}")
    return pool


def normalize_pool_size(pool_size) -> int:
    if not _is_int(pool_size):
        raise TypeError(f"pool_size must be an int, got {pool_size!r}")
    if pool_size < 1:
        raise ValueError(f"pool_size must be >= 1, got {pool_size}")
    return int(pool_size)


def normalize_scale(scale) -> int:
    if not _is_int(scale):
        raise TypeError(f"scale must be an int, got {scale!r}")
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    return int(scale)


# --------------------------------------------------------------------------------------------
# Tensors
# --------------------------------------------------------------------------------------------


def check_tensors(
    op: str, x, weight, bias: Optional[torch.Tensor]
) -> None:
    """Types, ranks, channel counts (groups = 1), devices and dtypes of the op's tensors."""
    for name, t in (("x", x), ("weight", weight)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if bias is not None and not isinstance(bias, torch.Tensor):
        raise TypeError(f"{op}: bias must be a torch.Tensor or None, got {type(bias).__name__}")
    if x.dim() != 4:
        raise ValueError(
            f"{op}: x must be a 4-D tensor [N, C, H, W], got shape {tuple(x.shape)} "
            "(unbatched inputs: add a batch dimension with x.unsqueeze(0))"
        )
    if weight.dim() != 4:
        raise ValueError(
            f"{op}: weight must be a 4-D tensor [C_out, C_in, kH, kW], got shape "
            f"{tuple(weight.shape)}"
        )
    cin, wcin, cout = x.shape[1], weight.shape[1], weight.shape[0]
    if wcin != cin:
        if wcin >= 1 and cin % wcin == 0:
            raise ValueError(
                f"{op}: groups > 1 is not supported: x has {cin} channels but weight expects "
                f"{wcin} input channels (a grouped convolution with {cin // wcin} groups); "
                "only groups = 1 is implemented"
            )
        raise ValueError(
            f"{op}: channel mismatch: x has {cin} channels but weight of shape "
            f"{tuple(weight.shape)} expects {wcin}"
        )
    if cin < 1:
        raise ValueError(f"{op}: x must have at least one channel, got shape {tuple(x.shape)}")
    if cout < 1:
        raise ValueError(
            f"{op}: weight must have at least one output channel, got shape {tuple(weight.shape)}"
        )
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != cout):
        raise ValueError(
            f"{op}: bias must be 1-D with {cout} elements (weight.shape[0]), got shape "
            f"{tuple(bias.shape)}"
        )
    tensors = [("x", x), ("weight", weight)] + ([("bias", bias)] if bias is not None else [])
    for name, t in tensors[1:]:
        if t.device != x.device:
            raise ValueError(
                f"{op}: all tensors must be on the same device: x is on {x.device} but {name} "
                f"is on {t.device}"
            )
    for name, t in tensors[1:]:
        if t.dtype != x.dtype:
            raise TypeError(
                f"{op}: all tensors must have the same dtype: x is {x.dtype} but {name} is "
                f"{t.dtype}"
            )
    if x.dtype not in TORCH_BACKEND_DTYPES:
        raise TypeError(
            f"{op}: unsupported dtype {x.dtype}; supported: float32, float16, bfloat16 "
            "(and float64 with backend='torch')"
        )
    check_kernel_extent(weight.shape[2], weight.shape[3])


def check_backend_dtype(op: str, dtype: torch.dtype, backend: str) -> None:
    if backend != "torch" and dtype not in KERNEL_DTYPES:
        raise TypeError(
            f"{op}: dtype {dtype} is not supported by the {backend!r} backend (float32, float16 "
            "and bfloat16 only); use backend='torch' for float64"
        )


_AUTOCAST_DEVICE_TYPES = ("cuda", "cpu", "xpu", "mps")


def apply_autocast(x, weight, bias):
    """Mirrors autocast's policy for ``F.conv2d`` (a lower-precision op): inside an enabled
    ``torch.autocast`` region of x's device type, float32/float16/bfloat16 tensors are cast to
    the autocast dtype (float64 and non-float tensors are left alone, as autocast does).
    The casts are differentiable, so gradients reach float32 parameters as float32."""
    if not isinstance(x, torch.Tensor):
        return x, weight, bias
    device_type = x.device.type
    if device_type not in _AUTOCAST_DEVICE_TYPES or not torch.is_autocast_enabled(device_type):
        return x, weight, bias
    dtype = torch.get_autocast_dtype(device_type)

    def cast(t):
        if isinstance(t, torch.Tensor) and t.dtype in KERNEL_DTYPES and t.device == x.device:
            return t.to(dtype)
        return t

    return cast(x), cast(weight), cast(bias)


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------


def conv_output_size(size, k: int, pad_lo: int, pad_hi: int, stride: int):
    """Output extent of a convolution along one axis (floor division, like PyTorch)."""
    return (size + pad_lo + pad_hi - k) // stride + 1


def check_conv_geometry(
    op: str, x: torch.Tensor, kh: int, kw: int, pads: Tuple[int, int, int, int], stride: int
) -> Tuple[int, int]:
    """Raises where F.conv2d raises; returns the conv output size ``(out_h, out_w)``."""
    pt, pb, pl, pr = pads
    n, _, h, w = x.shape
    if (h == 0 or w == 0) and n > 0:  # (sizes first: no guard on a dynamic batch)
        raise ValueError(
            f"{op}: x has an empty spatial size {tuple(x.shape[2:])} (only a zero batch is "
            "allowed to be empty, as in F.conv2d)"
        )
    hp, wp = h + pt + pb, w + pl + pr
    if hp < kh or wp < kw:
        raise ValueError(
            f"{op}: the padded input ({hp}x{wp}) is smaller than the kernel ({kh}x{kw}); "
            "the convolution would have no output"
        )
    return conv_output_size(h, kh, pt, pb, stride), conv_output_size(w, kw, pl, pr, stride)


def check_pool_geometry(op: str, out_h, out_w, pool_size: int) -> Tuple[int, int]:
    """Raises where F.max_pool2d / F.avg_pool2d (floor mode) raise; returns the pooled size."""
    if out_h < pool_size or out_w < pool_size:
        raise ValueError(
            f"{op}: the convolution output ({out_h}x{out_w}) is smaller than the pooling window "
            f"({pool_size}x{pool_size}); pooling would have an empty output"
        )
    return out_h // pool_size, out_w // pool_size


def check_shuffle_channels(op: str, cout: int, scale: int) -> None:
    if cout % (scale * scale) != 0:
        raise ValueError(
            f"{op}: weight.shape[0] ({cout}) must be divisible by scale**2 ({scale * scale}) "
            "for the pixel shuffle"
        )


# --------------------------------------------------------------------------------------------
# Memory format
# --------------------------------------------------------------------------------------------


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """The layout outputs are produced in: NCHW when x is plain contiguous (this includes the
    ambiguous shapes that are both, e.g. C == 1 or H == W == 1), channels_last when x is
    channels_last-contiguous, else whichever the strides of x suggest (for views)."""
    if x.is_contiguous():
        return torch.contiguous_format
    if x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    from torch._prims_common import suggest_memory_format

    return suggest_memory_format(x)
