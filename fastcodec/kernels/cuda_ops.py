"""CUDA C++ backend of the fused conv ops (``fastcodec._cuda``, built from ``csrc/cuda``).

The extension does not link against torch: it takes raw device pointers, element strides and a
``cudaStream_t`` as integers. This module turns tensors into those arguments. Launchers here check
their arguments but are not the public API (that is :mod:`fastcodec.ops`); they are inference-only
(no autograd) and run asynchronously on the current torch stream of the input's device.

Semantics (PyTorch names; the conv output size ``(out_h, out_w)`` is given by the caller, and the
padding is asymmetric: conv output ``(oh, ow)`` reads input ``(oh*stride - pad_top + ky,
ow*stride - pad_left + kx)``, zero outside the image):

* :func:`conv_relu_pool_cuda`: ``{max,avg}_pool2d(relu(conv2d(x, w, b, stride)), P)``, floor mode,
  output ``[N, Cout, out_h // P, out_w // P]``;
* :func:`conv_relu_upsample_cuda`: ``pixel_shuffle(relu(conv2d(x, w, b, 1)), s)``, ``w`` is
  ``[C*s*s, Cin, kh, kw]``, output ``[N, C, out_h*s, out_w*s]``.

float32, float16 and bfloat16 are supported, with fp32 accumulation. ``x`` may have any strides
(NCHW-contiguous and channels_last are the fast cases); the output is allocated in the memory
format ``F.conv2d`` would return (channels_last when ``x`` or ``weight`` is channels_last).
"""

from __future__ import annotations

import importlib
from typing import Optional

import torch

__all__ = ["is_available", "conv_relu_pool_cuda", "conv_relu_upsample_cuda"]

_DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}
_MAX_KERNEL_SIZE = 7


def _load_extension(required: bool):
    try:
        mod = importlib.import_module("fastcodec._cuda")
    except ImportError as exc:
        if not required:
            return None
        raise RuntimeError(
            "fastcodec._cuda is not available: the package was built without CUDA "
            "(nvcc was not found at build time, or FASTCODEC_CUDA=OFF); reinstall with the CUDA "
            f"toolkit on the PATH ({exc})"
        ) from exc
    if not hasattr(mod, "conv_relu_pool"):
        if not required:
            return None
        raise RuntimeError(
            "fastcodec._cuda has no fused conv kernels (stale build?): reinstall the package"
        )
    return mod


def is_available(device=None) -> bool:
    """True when the CUDA extension is built with the fused conv kernels and torch sees a GPU
    whose architecture the extension was compiled for (or can JIT from its PTX): ``device`` (a
    ``torch.device``, index or string, e.g. a tensor's ``.device``), by default the current one."""
    mod = _load_extension(required=False)
    if mod is None or not torch.cuda.is_available():
        return False
    return _device_supported(mod, device)


def _device_supported(mod, device) -> bool:
    """``device``'s compute capability is at least the lowest one the extension was built for."""
    try:
        major, minor = torch.cuda.get_device_capability(device)
    except Exception:  # not a CUDA device, or driver trouble after is_available()
        return False
    archs = list(mod.compiled_architectures())
    return bool(archs) and major * 10 + minor >= min(archs)


def _extension(device=None):
    """The extension, checked usable on ``device`` (x's device; None: no device check)."""
    mod = _load_extension(required=True)
    if not torch.cuda.is_available():
        raise RuntimeError(
            "CUDA is not available to torch (no GPU, no driver, or a CPU-only torch build): the "
            "fastcodec CUDA kernels cannot run"
        )
    if device is not None and not _device_supported(mod, device):
        try:
            major, minor = torch.cuda.get_device_capability(device)
            arch = f"sm_{major}{minor}"
        except Exception:
            arch = "unknown architecture"
        raise RuntimeError(
            f"fastcodec._cuda was built for {sorted(mod.compiled_architectures())}, which cannot run "
            f"on {device} ({arch}): rebuild with that architecture (FASTCODEC_CUDA_ARCHITECTURES)"
        )
    return mod


def _channels_last_strides(t: torch.Tensor) -> bool:
    """torch's ``suggest_memory_format() == channels_last`` for a 4-d tensor (the port of
    ``is_channels_last_strides_2d_s4``: ambiguous layouts count as NCHW)."""
    sizes, strides = t.shape, t.stride()
    if strides[1] == 0:
        return False
    smallest = 0
    for d in (1, 3, 2, 0):
        if strides[d] == 0 or strides[d] < smallest:
            return False
        if d == 0 and smallest == strides[1]:
            return False
        smallest = strides[d] * (sizes[d] if sizes[d] > 1 else 1)
    return True


def _output_memory_format(x: torch.Tensor, weight: torch.Tensor) -> torch.memory_format:
    # cudnn_conv_suggest_memory_format: channels_last when the input or the weight suggests it.
    if _channels_last_strides(x) or _channels_last_strides(weight):
        return torch.channels_last
    return torch.contiguous_format


def _check_operands(op: str, x, weight, bias):
    for name, t in (("x", x), ("weight", weight)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{op}: {name} must be 4-d, got shape {tuple(t.shape)}")
    if bias is not None and not isinstance(bias, torch.Tensor):
        raise TypeError(f"{op}: bias must be a torch.Tensor or None, got {type(bias).__name__}")
    if x.dtype not in _DTYPE_NAMES:
        raise ValueError(f"{op}: dtype must be float32, float16 or bfloat16, got {x.dtype}")
    if x.device.type != "cuda":
        raise ValueError(f"{op}: x must be a CUDA tensor, got device {x.device}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is None:
            continue
        if t.dtype != x.dtype:
            raise ValueError(f"{op}: {name} dtype {t.dtype} differs from x dtype {x.dtype}")
        if t.device != x.device:
            raise ValueError(f"{op}: {name} is on {t.device}, x on {x.device}")
    cout, cin, kh, kw = weight.shape
    if cin != x.shape[1]:
        raise ValueError(f"{op}: weight expects {cin} input channels, x has {x.shape[1]}")
    if not (1 <= kh <= _MAX_KERNEL_SIZE and 1 <= kw <= _MAX_KERNEL_SIZE):
        raise ValueError(f"{op}: kernel size must be in 1..{_MAX_KERNEL_SIZE}, got {kh}x{kw}")
    if bias is not None and tuple(bias.shape) != (cout,):
        raise ValueError(f"{op}: bias must have shape ({cout},), got {tuple(bias.shape)}")


def _check_geometry(op: str, pad_top: int, pad_left: int, out_h: int, out_w: int) -> None:
    if pad_top < 0 or pad_left < 0:
        raise ValueError(f"{op}: padding must be >= 0, got pad_top={pad_top}, pad_left={pad_left}")
    if out_h < 0 or out_w < 0:
        raise ValueError(f"{op}: conv output size must be >= 0, got {out_h}x{out_w}")


def conv_relu_pool_cuda(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    *,
    stride: int,
    pad_top: int,
    pad_left: int,
    out_h: int,
    out_w: int,
    pool: str,
    pool_size: int,
) -> torch.Tensor:
    """``{max,avg}_pool2d(relu(conv2d(x, weight, bias, stride)), pool_size)`` in one kernel.

    ``pool`` is ``"max"`` or ``"avg"``; ``stride`` 1 or 2; ``(out_h, out_w)`` the conv output
    size before pooling. Returns ``[N, Cout, out_h // pool_size, out_w // pool_size]``.
    """
    op = "conv_relu_pool_cuda"
    _extension()
    _check_operands(op, x, weight, bias)
    mod = _extension(x.device)
    if stride not in (1, 2):
        raise ValueError(f"{op}: stride must be 1 or 2, got {stride}")
    if pool not in ("max", "avg"):
        raise ValueError(f"{op}: pool must be 'max' or 'avg', got {pool!r}")
    if pool_size < 1:
        raise ValueError(f"{op}: pool_size must be >= 1, got {pool_size}")
    _check_geometry(op, pad_top, pad_left, out_h, out_w)

    n, cin, h, w = x.shape
    cout, _, kh, kw = weight.shape
    out = torch.empty(
        (n, cout, out_h // pool_size, out_w // pool_size),
        dtype=x.dtype,
        device=x.device,
        memory_format=_output_memory_format(x, weight),
    )
    if out.numel() == 0:
        return out
    weight = weight.contiguous()
    bias = bias.contiguous() if bias is not None else None
    mod.conv_relu_pool(
        x.data_ptr(), weight.data_ptr(), bias.data_ptr() if bias is not None else 0,
        out.data_ptr(), _DTYPE_NAMES[x.dtype],
        n, cin, h, w, cout, kh, kw, list(x.stride()), list(out.stride()),
        int(stride), int(pad_top), int(pad_left), int(out_h), int(out_w), pool, int(pool_size),
        torch.cuda.current_stream(x.device).cuda_stream, x.device.index,
    )
    return out


def conv_relu_upsample_cuda(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    *,
    pad_top: int,
    pad_left: int,
    out_h: int,
    out_w: int,
    scale: int,
) -> torch.Tensor:
    """``pixel_shuffle(relu(conv2d(x, weight, bias, 1)), scale)`` in one kernel.

    ``weight`` is ``[C*scale*scale, Cin, kh, kw]``; ``(out_h, out_w)`` the conv output size.
    Returns ``[N, C, out_h*scale, out_w*scale]``.
    """
    op = "conv_relu_upsample_cuda"
    _extension()
    _check_operands(op, x, weight, bias)
    mod = _extension(x.device)
    if scale < 1:
        raise ValueError(f"{op}: scale must be >= 1, got {scale}")
    cout = weight.shape[0]
    if cout % (scale * scale):
        raise ValueError(
            f"{op}: weight has {cout} output channels, not a multiple of scale**2 = {scale * scale}"
        )
    _check_geometry(op, pad_top, pad_left, out_h, out_w)

    n, cin, h, w = x.shape
    _, _, kh, kw = weight.shape
    out = torch.empty(
        (n, cout // (scale * scale), out_h * scale, out_w * scale),
        dtype=x.dtype,
        device=x.device,
        memory_format=_output_memory_format(x, weight),
    )
    if out.numel() == 0:
        return out
    weight = weight.contiguous()
    bias = bias.contiguous() if bias is not None else None
    mod.conv_relu_upsample(
        x.data_ptr(), weight.data_ptr(), bias.data_ptr() if bias is not None else 0,
        out.data_ptr(), _DTYPE_NAMES[x.dtype],
        n, cin, h, w, cout, kh, kw, list(x.stride()), list(out.stride()),
        int(pad_top), int(pad_left), int(out_h), int(out_w), int(scale),
        torch.cuda.current_stream(x.device).cuda_stream, x.device.index,
    )
    return out
