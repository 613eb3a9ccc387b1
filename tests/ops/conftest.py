"""Shared setup for the fused-op tests: Triton interpreter on CPU-only machines, float64 references.

Without a CUDA device the Triton kernels run in the interpreter, which must be switched on before
the first ``@triton.jit`` decorator runs, i.e. before any kernel module is imported: this conftest
sets ``TRITON_INTERPRET=1`` at import time (pytest imports it before the test modules here).

Test modules import the helpers with ``from _fastcodec_ops_test_helpers import ...``: this conftest
registers itself under that name (the bare name ``conftest`` is ambiguous next to the other
conftest files of the session).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
DEVICE = "cpu" if INTERPRET or not torch.cuda.is_available() else "cuda"


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TensorFlow-style "same": (out, pad_before, pad_after), the odd pixel going after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


def conv_out_size(size: int, kernel: int, stride: int, pad_before: int, pad_after: int) -> int:
    return (size + pad_before + pad_after - kernel) // stride + 1


def _conv_relu_f64(x, weight, bias, *, stride, pad_top, pad_left, out_h, out_w):
    """relu(conv2d) in float64 on the CPU; bottom/right padding follow from (out_h, out_w)."""
    x64 = x.detach().to("cpu", torch.float64)
    w64 = weight.detach().to("cpu", torch.float64)
    b64 = None if bias is None else bias.detach().to("cpu", torch.float64)
    _, _, h, w = x64.shape
    kh, kw = w64.shape[-2:]
    pad_bottom = (out_h - 1) * stride + kh - h - pad_top
    pad_right = (out_w - 1) * stride + kw - w - pad_left
    xp = F.pad(x64, (pad_left, pad_right, pad_top, pad_bottom))  # negative = crop (unused rows)
    y = F.conv2d(xp, w64, b64, stride)
    assert tuple(y.shape[-2:]) == (out_h, out_w), (tuple(y.shape), out_h, out_w)
    return F.relu(y)


def reference_conv_relu_pool(x, weight, bias, *, stride, pad_top, pad_left, out_h, out_w, pool, pool_size):
    """``{max,avg}_pool2d(relu(conv2d(...)), pool_size)`` in float64 on the CPU."""
    y = _conv_relu_f64(x, weight, bias, stride=stride, pad_top=pad_top, pad_left=pad_left,
                       out_h=out_h, out_w=out_w)
    if pool == "max":
        return F.max_pool2d(y, pool_size)
    if pool == "avg":
        return F.avg_pool2d(y, pool_size)
    raise ValueError(pool)


def reference_conv_relu_upsample(x, weight, bias, *, pad_top, pad_left, out_h, out_w, scale):
    """``pixel_shuffle(relu(conv2d(..., stride 1)), scale)`` in float64 on the CPU."""
    y = _conv_relu_f64(x, weight, bias, stride=1, pad_top=pad_top, pad_left=pad_left,
                       out_h=out_h, out_w=out_w)
    return F.pixel_shuffle(y, scale)


# The Triton interpreter itself trips NumPy's "array to scalar" deprecation (a kernel loop bound that is
# a runtime argument); it says nothing about the code under test.
_INTERPRETER_NOISE = pytest.mark.filterwarnings(
    "ignore:Conversion of an array with ndim > 0 to a scalar:DeprecationWarning"
)


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(_INTERPRETER_NOISE)


sys.modules["_fastcodec_ops_test_helpers"] = sys.modules[__name__]
