"""The public API of the fused conv ops: reference equality, layouts, errors, backend choice.

Everything runs on CPU tensors: the "torch" backend always, the "triton" backend in the Triton
interpreter (tests/ops/conftest.py turns it on when there is no GPU) on small shapes.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import types
import warnings
import zlib

import pytest
import torch
import torch.nn.functional as F

from fastcodec import ops
from fastcodec.ops import _backend, _conv, conv_relu_pool, conv_relu_upsample

CL = torch.channels_last
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
KERNEL_DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def rand(shape, dtype=torch.float32, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype)


def make(n, cin, h, w, cout, kh, kw, dtype=torch.float32, layout="nchw", bias=True, seed=0):
    x = rand((n, cin, h, w), dtype, seed)
    if layout == "cl":
        x = x.to(memory_format=CL)
    weight = rand((cout, cin, kh, kw), dtype, seed + 1, scale=(cin * kh * kw) ** -0.5)
    b = rand((cout,), dtype, seed + 2, scale=0.1) if bias else None
    return x, weight, b


def ref_pool(x, weight, bias, stride, padding, pool, pool_size):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # F.conv2d's note about 'same' with even kernels
        y = F.relu(F.conv2d(x, weight, bias, stride, padding))
    return (F.max_pool2d if pool == "max" else F.avg_pool2d)(y, pool_size)


def ref_upsample(x, weight, bias, padding, scale):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y = F.relu(F.conv2d(x, weight, bias, 1, padding))
    return F.pixel_shuffle(y, scale)


def expected_format(x):
    return CL if (x.is_contiguous(memory_format=CL) and not x.is_contiguous()) else None


def check_layout(out, x):
    if expected_format(x) is CL:
        assert out.is_contiguous(memory_format=CL)
    else:
        assert out.is_contiguous()


def triton_usable() -> bool:
    return _backend.triton_available() and (
        torch.cuda.is_available() or _backend.triton_interpreter_enabled()
    )


needs_triton = pytest.mark.skipif(
    not triton_usable(), reason="Triton kernels not importable or no GPU / interpreter"
)
TRITON_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# (n, cin, h, w, cout, kh, kw, stride, padding, pool, pool_size)
POOL_CASES = [
    (2, 3, 8, 8, 4, 3, 3, 1, 1, "max", 2),
    (1, 2, 9, 7, 5, 3, 3, 1, 0, "avg", 2),  # odd sizes: floor mode drops the last row/col
    (2, 3, 10, 9, 4, 2, 2, 1, "same", "max", 2),  # even kernel: asymmetric padding
    (1, 4, 7, 11, 3, 2, 4, 1, "same", "avg", 3),  # kh != kw, both even
    (1, 3, 9, 9, 6, 5, 3, 1, "same", "max", 1),
    (2, 2, 13, 12, 4, 3, 3, 2, 1, "max", 2),  # stride 2
    (1, 3, 15, 10, 2, 7, 7, 2, (3, 2), "avg", 2),  # 7x7, pair padding
    (1, 1, 6, 6, 1, 1, 1, 1, 0, "max", 3),  # 1x1 conv, one channel
    (0, 3, 8, 8, 4, 3, 3, 1, 1, "max", 2),  # empty batch
    (3, 5, 5, 6, 7, 4, 1, 1, "valid", "avg", 2),
    (1, 2, 12, 12, 3, 6, 6, 2, (2, 2), "max", 2),
    (1, 2, 4, 4, 3, 3, 3, 1, 1, "avg", 4),  # window == whole output
]

# (n, cin, h, w, cout, kh, kw, padding, scale)
UPSAMPLE_CASES = [
    (2, 3, 6, 5, 8, 3, 3, 1, 2),
    (1, 2, 5, 7, 12, 2, 2, "same", 2),
    (1, 4, 4, 6, 8, 3, 4, "same", 2),
    (2, 3, 5, 5, 18, 5, 5, (2, 1), 3),
    (0, 3, 6, 6, 8, 3, 3, 1, 2),
    (1, 2, 7, 3, 3, 1, 1, 0, 1),
    (1, 3, 9, 9, 4, 7, 6, "valid", 2),
]


def _pool_id(c):
    return "n{}c{}x{}x{}o{}k{}x{}s{}p{}-{}{}".format(*c).replace(" ", "")


def _up_id(c):
    return "n{}c{}x{}x{}o{}k{}x{}p{}r{}".format(*c).replace(" ", "")


# --------------------------------------------------------------------------------------------
# Reference equality (torch backend)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", POOL_CASES, ids=_pool_id)
def test_pool_matches_reference(case, dtype, layout):
    n, cin, h, w, cout, kh, kw, stride, padding, pool, k = case
    x, weight, bias = make(n, cin, h, w, cout, kh, kw, dtype, layout, seed=zlib.crc32(repr(case).encode()) % 1000)
    out = conv_relu_pool(x, weight, bias, stride=stride, padding=padding, pool=pool,
                         pool_size=k, backend="torch")
    ref = ref_pool(x, weight, bias, stride, padding, pool, k)
    assert out.dtype == dtype and out.shape == ref.shape
    torch.testing.assert_close(out, ref)
    check_layout(out, x)
    if n:
        assert out.abs().sum() > 0  # non-trivial data


@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", UPSAMPLE_CASES, ids=_up_id)
def test_upsample_matches_reference(case, dtype, layout):
    n, cin, h, w, cout, kh, kw, padding, scale = case
    x, weight, bias = make(n, cin, h, w, cout, kh, kw, dtype, layout, seed=7)
    out = conv_relu_upsample(x, weight, bias, padding=padding, scale=scale, backend="torch")
    ref = ref_upsample(x, weight, bias, padding, scale)
    assert out.dtype == dtype and out.shape == ref.shape
    torch.testing.assert_close(out, ref)
    check_layout(out, x)


def test_no_bias_and_stride_pair():
    x, weight, _ = make(2, 3, 9, 9, 4, 3, 3)
    out = conv_relu_pool(x, weight, None, stride=(2, 2), padding=(1, 1), backend="torch")
    torch.testing.assert_close(out, ref_pool(x, weight, None, 2, 1, "max", 2))
    out = conv_relu_upsample(x, torch.cat([weight, weight]), padding=[1, 0], backend="torch")
    torch.testing.assert_close(out, ref_upsample(x, torch.cat([weight, weight]), None, (1, 0), 2))


def test_default_arguments():
    x, weight, bias = make(1, 2, 8, 8, 4, 3, 3)
    torch.testing.assert_close(conv_relu_pool(x, weight, bias), ref_pool(x, weight, bias, 1, 0, "max", 2))
    torch.testing.assert_close(conv_relu_upsample(x, weight, bias), ref_upsample(x, weight, bias, 0, 2))


def test_non_contiguous_input_views():
    base, weight, bias = make(2, 4, 12, 12, 4, 3, 3)
    for x in (base[:, :3, 1:, ::2], base.to(memory_format=CL)[:, :3, 1:, 2:]):
        w3 = weight[:, :3]
        out = conv_relu_pool(x, w3, bias, padding=1, backend="torch")
        torch.testing.assert_close(out, ref_pool(x, w3, bias, 1, 1, "max", 2))


def test_output_memory_format_follows_input_only():
    x, weight, bias = make(1, 3, 8, 8, 4, 3, 3)
    out = conv_relu_pool(x, weight.to(memory_format=CL), bias, padding=1, backend="torch")
    assert out.is_contiguous()  # an NCHW input gives NCHW even with a channels_last weight
    out = conv_relu_pool(x.to(memory_format=CL), weight, bias, padding=1, backend="torch")
    assert out.is_contiguous(memory_format=CL) and not out.is_contiguous()
    w8 = torch.cat([weight, weight])
    out = conv_relu_upsample(x.to(memory_format=CL), w8, None, padding=1, backend="torch")
    assert out.is_contiguous(memory_format=CL) and not out.is_contiguous()


@pytest.mark.parametrize("layout", ["nchw", "cl"])
def test_fake_impl_matches_real(layout):
    """The registered fake (meta) implementations give the real shapes, dtypes and strides."""
    x, weight, bias = make(2, 3, 9, 8, 8, 2, 3, layout=layout)
    real = torch.ops.fastcodec.conv_relu_pool(x, weight, bias, 1, 0, 1, 1, 1, "avg", 2, "torch")
    meta = torch.ops.fastcodec.conv_relu_pool(
        x.to("meta"), weight.to("meta"), bias.to("meta"), 1, 0, 1, 1, 1, "avg", 2, "torch"
    )
    assert meta.shape == real.shape and meta.stride() == real.stride() and meta.dtype == real.dtype
    real = torch.ops.fastcodec.conv_relu_upsample(x, weight, None, 0, 1, 1, 1, 2, "torch")
    meta = torch.ops.fastcodec.conv_relu_upsample(
        x.to("meta"), weight.to("meta"), None, 0, 1, 1, 1, 2, "torch"
    )
    assert meta.shape == real.shape and meta.stride() == real.stride() and meta.dtype == real.dtype


def test_opcheck():
    x, weight, bias = make(1, 2, 6, 5, 4, 2, 3, layout="cl")
    torch.library.opcheck(
        torch.ops.fastcodec.conv_relu_pool.default,
        (x, weight, bias, 1, 0, 1, 1, 1, "max", 2, "torch"),
        test_utils=("test_schema", "test_autograd_registration", "test_faketensor"),
    )
    torch.library.opcheck(
        torch.ops.fastcodec.conv_relu_upsample.default,
        (x, weight, None, 1, 1, 1, 1, 2, "torch"),
        test_utils=("test_schema", "test_autograd_registration", "test_faketensor"),
    )


# --------------------------------------------------------------------------------------------
# torch backend on CPU: the oneDNN fast path and its fallbacks
# --------------------------------------------------------------------------------------------

needs_onednn = pytest.mark.skipif(not _conv._ONEDNN_POINTWISE, reason="no oneDNN fused conv")


@contextlib.contextmanager
def mkldnn_disabled():
    with warnings.catch_warnings():  # torch's flags() also sets oneDNN TF32, with a GPU warning
        warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
        with torch.backends.mkldnn.flags(enabled=False):
            yield


@needs_onednn
def test_mkldnn_disabled_takes_plain_path(monkeypatch):
    calls = []
    fused_conv = torch.ops.mkldnn._convolution_pointwise
    monkeypatch.setattr(torch.ops.mkldnn, "_convolution_pointwise",
                        lambda *args: calls.append(1) or fused_conv(*args))
    x, weight, bias = make(1, 3, 8, 8, 8, 3, 3, seed=30)
    with mkldnn_disabled():
        out = conv_relu_pool(x, weight, bias, padding=1, backend="torch")
        up = conv_relu_upsample(x, weight, bias, padding=1, backend="torch")
        torch.testing.assert_close(out, ref_pool(x, weight, bias, 1, 1, "max", 2))
        torch.testing.assert_close(up, ref_upsample(x, weight, bias, 1, 2))
    assert calls == []
    conv_relu_pool(x, weight, bias, padding=1, backend="torch")
    assert calls == [1]  # enabled again: the fused oneDNN kernel


_NO_AVX512_SCRIPT = textwrap.dedent("""
    import torch, torch.nn.functional as F
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if probe is None or probe():
        print("ISA cap ignored")
        raise SystemExit(0)
    from fastcodec.ops import conv_relu_pool, conv_relu_upsample
    g = torch.Generator().manual_seed(31)
    x, w, b = (torch.randn(s, generator=g).to(torch.bfloat16) for s in ((1, 3, 8, 8), (8, 3, 3, 3), (8,)))
    y = F.relu(F.conv2d(x, w, b, 1, 1))
    torch.testing.assert_close(conv_relu_pool(x, w, b, padding=1, backend="torch"), F.max_pool2d(y, 2))
    torch.testing.assert_close(conv_relu_upsample(x, w, b, padding=1, backend="torch"),
                               F.pixel_shuffle(y, 2))
    print("ok")
""")


def test_bfloat16_on_cpu_without_onednn_bf16():
    """oneDNN's bf16 convolutions need AVX512 (BW/VL/DQ) or AVX-NE-CONVERT, F.conv2d does not:
    a CPU without them is simulated by capping oneDNN's ISA (read when oneDNN starts)."""
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2")
    run = subprocess.run([sys.executable, "-c", _NO_AVX512_SCRIPT], capture_output=True,
                         text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    if "ISA cap ignored" in run.stdout:
        pytest.skip("ONEDNN_MAX_CPU_ISA does not turn off oneDNN's bf16 support here")
    assert run.stdout.strip().endswith("ok")


def nan_inputs(dtype, cout=8, seed=32):
    """One NaN in the input: the convolution output is NaN in a 3x3 corner, finite elsewhere."""
    x, weight, bias = make(1, 3, 6, 6, cout, 3, 3, dtype, seed=seed)
    x[0, 1, 1, 1] = float("nan")
    return x, weight, bias


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=str)
def test_nan_torch_backend_cpu(dtype):
    """Documented: NaN propagate, except through oneDNN's fused ReLU (CPU, float32/bfloat16),
    which maps a NaN of the convolution output to 0."""
    x, weight, bias = nan_inputs(dtype)
    y = F.conv2d(x, weight, bias, 1, 1)
    onednn = _conv._onednn_fusable(x, weight, bias)
    z = F.relu(torch.where(y.isnan(), 0.0, y) if onednn else y)
    outs = {
        "max": conv_relu_pool(x, weight, bias, padding=1, pool="max", backend="torch"),
        "avg": conv_relu_pool(x, weight, bias, padding=1, pool="avg", backend="torch"),
        "up": conv_relu_upsample(x, weight, bias, padding=1, backend="torch"),
    }
    refs = {"max": F.max_pool2d(z, 2), "avg": F.avg_pool2d(z, 2), "up": F.pixel_shuffle(z, 2)}
    for k, out in outs.items():
        assert out.isnan().any() != onednn, k
        torch.testing.assert_close(out, refs[k], equal_nan=True)
    with mkldnn_disabled():  # the documented way to keep NaN
        out = conv_relu_pool(x, weight, bias, padding=1, backend="torch")
    torch.testing.assert_close(out, F.max_pool2d(F.relu(y), 2), equal_nan=True)
    assert out.isnan().any()


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

X = rand((1, 4, 8, 8))
W = rand((6, 4, 3, 3))
B = rand((6,))

POOL_ERRORS = [
    ("groups", lambda: conv_relu_pool(X, rand((6, 2, 3, 3))), ValueError, "groups > 1 is not supported"),
    ("channels", lambda: conv_relu_pool(X, rand((6, 3, 3, 3))), ValueError, "channel mismatch"),
    ("x rank", lambda: conv_relu_pool(X[0], W), ValueError, "4-D"),
    ("w rank", lambda: conv_relu_pool(X, W[0]), ValueError, "4-D"),
    ("x type", lambda: conv_relu_pool(X.numpy(), W), TypeError, "torch.Tensor"),
    ("bias shape", lambda: conv_relu_pool(X, W, B[:5]), ValueError, "bias"),
    ("bias type", lambda: conv_relu_pool(X, W, 1.0), TypeError, "bias"),
    ("device", lambda: conv_relu_pool(X, W.to("meta")), ValueError, "same device"),
    ("dtype", lambda: conv_relu_pool(X, W.double()), TypeError, "same dtype"),
    ("bias dtype", lambda: conv_relu_pool(X, W, B.half()), TypeError, "same dtype"),
    ("int dtype", lambda: conv_relu_pool(X.int(), W.int()), TypeError, "unsupported dtype"),
    ("complex", lambda: conv_relu_pool(X.cfloat(), W.cfloat()), TypeError, "unsupported dtype"),
    ("kernel 9", lambda: conv_relu_pool(rand((1, 4, 20, 20)), rand((6, 4, 9, 9))), ValueError, "kernel size"),
    ("kernel 8x3", lambda: conv_relu_pool(rand((1, 4, 20, 20)), rand((6, 4, 8, 3))), ValueError, "kernel size"),
    ("stride 3", lambda: conv_relu_pool(X, W, stride=3), ValueError, "stride must be 1 or 2"),
    ("stride pair", lambda: conv_relu_pool(X, W, stride=(1, 2)), ValueError, "same along height"),
    ("stride float", lambda: conv_relu_pool(X, W, stride=1.0), TypeError, "stride"),
    ("stride 0", lambda: conv_relu_pool(X, W, stride=0), ValueError, "stride"),
    ("padding -1", lambda: conv_relu_pool(X, W, padding=-1), ValueError, "non-negative"),
    ("padding pair -1", lambda: conv_relu_pool(X, W, padding=(1, -1)), ValueError, "non-negative"),
    ("padding str", lambda: conv_relu_pool(X, W, padding="full"), ValueError, "padding"),
    ("padding triple", lambda: conv_relu_pool(X, W, padding=(1, 1, 1)), TypeError, "padding"),
    ("same stride 2", lambda: conv_relu_pool(X, W, stride=2, padding="same"), ValueError, "stride 1"),
    ("pool kind", lambda: conv_relu_pool(X, W, pool="min"), ValueError, "pool must be one of"),
    ("pool size 0", lambda: conv_relu_pool(X, W, pool_size=0), ValueError, "pool_size"),
    ("pool size float", lambda: conv_relu_pool(X, W, pool_size=2.0), TypeError, "pool_size"),
    ("pool window", lambda: conv_relu_pool(X, W, pool_size=7), ValueError, "smaller than the pooling window"),
    ("kernel > input", lambda: conv_relu_pool(X[:, :, :2], W), ValueError, "smaller than the kernel"),
    ("empty spatial", lambda: conv_relu_pool(X[:, :, :0], W, padding=2), ValueError, "empty spatial"),
    ("no out channels", lambda: conv_relu_pool(X, W[:0]), ValueError, "output channel"),
    ("no in channels", lambda: conv_relu_pool(X[:, :0], W[:, :0]), ValueError, "at least one channel"),
    ("backend", lambda: conv_relu_pool(X, W, backend="numpy"), ValueError, "unknown backend"),
    ("backend type", lambda: conv_relu_pool(X, W, backend=1), TypeError, "backend must be"),
    ("dilation", lambda: conv_relu_pool(X, W, dilation=2), TypeError, "dilation"),
    ("groups kw", lambda: conv_relu_pool(X, W, groups=2), TypeError, "groups"),
]

UPSAMPLE_ERRORS = [
    ("channels", lambda: conv_relu_upsample(X, rand((6, 4, 3, 3))), ValueError, "divisible by scale"),
    ("scale 0", lambda: conv_relu_upsample(X, rand((8, 4, 3, 3)), scale=0), ValueError, "scale"),
    ("scale float", lambda: conv_relu_upsample(X, rand((8, 4, 3, 3)), scale=2.0), TypeError, "scale"),
    ("groups", lambda: conv_relu_upsample(X, rand((8, 1, 3, 3))), ValueError, "groups > 1"),
    ("kernel 8", lambda: conv_relu_upsample(rand((1, 4, 20, 20)), rand((8, 4, 8, 8))), ValueError, "kernel size"),
    ("kernel > input", lambda: conv_relu_upsample(X[:, :, :, :2], rand((8, 4, 3, 3))), ValueError, "smaller than the kernel"),
    ("padding", lambda: conv_relu_upsample(X, rand((8, 4, 3, 3)), padding=-2), ValueError, "non-negative"),
    ("dtype", lambda: conv_relu_upsample(X.half(), rand((8, 4, 3, 3))), TypeError, "same dtype"),
    ("stride kw", lambda: conv_relu_upsample(X, rand((8, 4, 3, 3)), stride=1), TypeError, "stride"),
]


@pytest.mark.parametrize("name,fn,exc,match", POOL_ERRORS + UPSAMPLE_ERRORS,
                         ids=[e[0] for e in POOL_ERRORS] + ["up-" + e[0] for e in UPSAMPLE_ERRORS])
def test_errors(name, fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


@pytest.mark.parametrize(
    "n,h,w,kh,padding,stride,pool_size",
    [
        (1, 2, 5, 3, 0, 1, 2),  # kernel larger than the input
        (1, 3, 5, 3, 0, 1, 2),  # conv output height 1 < pool window
        (0, 3, 5, 3, 0, 1, 2),  # same with an empty batch (PyTorch raises too)
        (0, 2, 8, 3, 0, 1, 2),
        (1, 4, 4, 3, 0, 1, 2),  # conv output 2x2: exactly one window
        (0, 4, 4, 3, 0, 1, 2),
        (1, 1, 1, 3, 1, 1, 1),  # 1x1 image, padded
        (1, 1, 1, 3, 1, 1, 2),
        (1, 5, 5, 3, 0, 2, 2),  # stride 2 output 2x2
        (1, 4, 4, 3, 0, 2, 2),  # stride 2 output 1x1 < window
        (0, 0, 4, 3, 2, 1, 1),  # empty batch and height, padded (PyTorch allows it)
        (1, 0, 4, 3, 2, 1, 1),  # non-empty batch with an empty height (PyTorch raises)
    ],
)
def test_edge_geometry_matches_pytorch(n, h, w, kh, padding, stride, pool_size):
    """Raises exactly where the unfused composition raises, else gives the same result."""
    x = rand((n, 2, h, w))
    weight = rand((3, 2, kh, kh), seed=1)
    try:
        ref = ref_pool(x, weight, None, stride, padding, "max", pool_size)
    except RuntimeError:
        with pytest.raises(ValueError):
            conv_relu_pool(x, weight, stride=stride, padding=padding, pool_size=pool_size)
        return
    out = conv_relu_pool(x, weight, stride=stride, padding=padding, pool_size=pool_size)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref)


# --------------------------------------------------------------------------------------------
# Backend selection
# --------------------------------------------------------------------------------------------

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv(_backend.ENV_VAR, raising=False)
    return monkeypatch


def test_default_backend(clean_env):
    assert _backend.resolve_backend(None, CPU, "op") == "torch"
    clean_env.setattr(_backend, "triton_available", lambda: True)
    assert _backend.resolve_backend(None, CUDA, "op") == "triton"
    assert _backend.resolve_backend(None, CPU, "op") == "torch"  # CPU never defaults to triton
    clean_env.setattr(_backend, "triton_available", lambda: False)
    assert _backend.resolve_backend(None, CUDA, "op") == "torch"


def test_cuda_backend_is_not_default_yet(clean_env):
    assert ops.CUDA_BACKEND_IS_DEFAULT is False
    clean_env.setattr(_backend, "triton_available", lambda: True)
    clean_env.setattr(_backend, "cuda_ops_available", lambda device=None: True)
    assert _backend.resolve_backend(None, CUDA, "op") == "triton"
    clean_env.setattr(_backend, "CUDA_BACKEND_IS_DEFAULT", True)  # once its GPU tests pass
    assert _backend.resolve_backend(None, CUDA, "op") == "cuda"
    clean_env.setattr(_backend, "cuda_ops_available", lambda device=None: False)
    assert _backend.resolve_backend(None, CUDA, "op") == "triton"


def test_env_var(clean_env):
    clean_env.setenv("FASTCODEC_BACKEND", "torch")
    clean_env.setattr(_backend, "triton_available", lambda: True)
    assert _backend.resolve_backend(None, CUDA, "op") == "torch"
    clean_env.setenv("FASTCODEC_BACKEND", "")  # empty: ignored
    assert _backend.resolve_backend(None, CUDA, "op") == "triton"
    clean_env.setenv("FASTCODEC_BACKEND", "tpu")
    with pytest.raises(ValueError, match="FASTCODEC_BACKEND"):
        _backend.resolve_backend(None, CPU, "op")
    with pytest.raises(ValueError, match="FASTCODEC_BACKEND"):
        conv_relu_pool(X, W)
    # the argument wins over the environment
    assert _backend.resolve_backend("torch", CPU, "op") == "torch"
    torch.testing.assert_close(conv_relu_pool(X, W, backend="torch"), ref_pool(X, W, None, 1, 0, "max", 2))


def test_cuda_backend_requirements(clean_env):
    with pytest.raises(RuntimeError, match="needs CUDA tensors"):
        _backend.resolve_backend("cuda", CPU, "op")
    with pytest.raises(RuntimeError, match="needs CUDA tensors"):
        conv_relu_pool(X, W, backend="cuda")
    clean_env.setattr(_backend, "cuda_ops_available", lambda device=None: False)
    with pytest.raises(RuntimeError, match="is not available"):
        _backend.resolve_backend("cuda", CUDA, "op")
    clean_env.setenv("FASTCODEC_BACKEND", "cuda")
    with pytest.raises(RuntimeError, match="FASTCODEC_BACKEND"):
        _backend.resolve_backend(None, CUDA, "op")
    clean_env.setattr(_backend, "cuda_ops_available", lambda device=None: True)
    assert _backend.resolve_backend("cuda", CUDA, "op") == "cuda"


def test_triton_on_cpu_needs_interpreter(clean_env):
    clean_env.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        _backend.resolve_backend("triton", CPU, "op")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        conv_relu_upsample(X, rand((8, 4, 3, 3)), backend="triton")
    clean_env.setenv("TRITON_INTERPRET", "1")
    clean_env.setattr(_backend, "triton_available", lambda: True)
    assert _backend.resolve_backend("triton", CPU, "op") == "triton"
    clean_env.setattr(_backend, "triton_available", lambda: False)
    with pytest.raises(RuntimeError, match="cannot be imported"):
        _backend.resolve_backend("triton", CPU, "op")
    with pytest.raises(RuntimeError, match="cannot be imported"):
        _backend.resolve_backend("triton", CUDA, "op")


def test_float64_only_with_torch_backend(clean_env):
    clean_env.setattr(_backend, "cuda_ops_available", lambda device=None: True)
    clean_env.setenv("TRITON_INTERPRET", "1")
    clean_env.setattr(_backend, "triton_available", lambda: True)
    with pytest.raises(TypeError, match="float64"):
        conv_relu_pool(X.double(), W.double(), backend="triton")
    with pytest.raises(TypeError, match="float64"):
        conv_relu_upsample(X.double(), rand((8, 4, 3, 3)).double(), backend="triton")


def _fake_launchers(calls):
    """A stand-in for the kernel modules: records the keyword arguments and computes the result
    from them alone (so the pads / out_h / out_w the ops pass are checked for consistency)."""

    def pool_launcher(x, weight, bias, *, stride, pad_top, pad_left, out_h, out_w, pool, pool_size):
        calls.append(dict(x=x, stride=stride, pad_top=pad_top, pad_left=pad_left, out_h=out_h,
                          out_w=out_w, pool=pool, pool_size=pool_size))
        y = _conv_from_launcher_args(x, weight, bias, stride, pad_top, pad_left, out_h, out_w)
        z = (F.max_pool2d if pool == "max" else F.avg_pool2d)(F.relu(y), pool_size)
        return z.contiguous(memory_format=expected_format(x) or torch.contiguous_format)

    def upsample_launcher(x, weight, bias, *, pad_top, pad_left, out_h, out_w, scale):
        calls.append(dict(x=x, pad_top=pad_top, pad_left=pad_left, out_h=out_h, out_w=out_w,
                          scale=scale))
        y = _conv_from_launcher_args(x, weight, bias, 1, pad_top, pad_left, out_h, out_w)
        return F.pixel_shuffle(F.relu(y), scale).contiguous(
            memory_format=expected_format(x) or torch.contiguous_format)

    return pool_launcher, upsample_launcher


def _conv_from_launcher_args(x, weight, bias, stride, pad_top, pad_left, out_h, out_w):
    kh, kw = weight.shape[2:]
    pad_bottom = (out_h - 1) * stride + kh - x.shape[2] - pad_top
    pad_right = (out_w - 1) * stride + kw - x.shape[3] - pad_left
    y = F.conv2d(F.pad(x, (pad_left, pad_right, pad_top, pad_bottom)), weight, bias, stride)
    assert tuple(y.shape[2:]) == (out_h, out_w)
    return y


@pytest.mark.parametrize("layout", ["nchw", "cl"])
def test_cuda_backend_wiring(clean_env, layout):
    """The "cuda" backend calls cuda_ops' launchers with the documented keyword arguments
    (a stand-in module on CPU tensors: the custom op itself does not check the device)."""
    calls = []
    pool_l, up_l = _fake_launchers(calls)
    fake = types.SimpleNamespace(conv_relu_pool_cuda=pool_l, conv_relu_upsample_cuda=up_l,
                                 is_available=lambda: True)
    clean_env.setitem(sys.modules, "fastcodec.kernels.cuda_ops", fake)
    x, weight, bias = make(2, 3, 9, 7, 8, 2, 4, layout=layout)
    # "same" with a 2x4 kernel: top = 0, bottom = 1, left = 1, right = 2
    out = torch.ops.fastcodec.conv_relu_pool(x, weight, bias, 1, 0, 1, 1, 2, "avg", 2, "cuda")
    torch.testing.assert_close(out, ref_pool(x, weight, bias, 1, "same", "avg", 2))
    assert calls[-1]["pad_top"] == 0 and calls[-1]["pad_left"] == 1
    assert (calls[-1]["out_h"], calls[-1]["out_w"]) == (9, 7)
    assert calls[-1]["x"].is_contiguous(memory_format=expected_format(x) or torch.contiguous_format)
    check_layout(out, x)
    out = torch.ops.fastcodec.conv_relu_upsample(x, weight, None, 0, 1, 1, 2, 2, "cuda")
    torch.testing.assert_close(out, ref_upsample(x, weight, None, "same", 2))
    assert (calls[-1]["out_h"], calls[-1]["out_w"], calls[-1]["scale"]) == (9, 7, 2)
    check_layout(out, x)


def test_backend_launcher_returning_wrong_shape_is_caught(clean_env):
    fake = types.SimpleNamespace(
        conv_relu_pool_cuda=lambda x, w, b, **kw: torch.zeros(1),
        conv_relu_upsample_cuda=lambda x, w, b, **kw: torch.zeros(1),
        is_available=lambda: True,
    )
    clean_env.setitem(sys.modules, "fastcodec.kernels.cuda_ops", fake)
    with pytest.raises(RuntimeError, match="returned"):
        torch.ops.fastcodec.conv_relu_pool(X, W, None, 1, 0, 0, 0, 0, "max", 2, "cuda")


@pytest.mark.skipif(not _backend.triton_available(), reason="Triton kernels not importable")
def test_env_var_selects_triton_launcher(clean_env):
    """FASTCODEC_BACKEND=triton routes through the Triton launcher (spied on)."""
    import fastcodec.kernels.conv_relu_pool as kpool

    calls = []
    pool_l, _ = _fake_launchers(calls)
    clean_env.setattr(kpool, "conv_relu_pool_triton", pool_l)
    clean_env.setenv("TRITON_INTERPRET", "1")
    clean_env.setenv("FASTCODEC_BACKEND", "triton")
    out = conv_relu_pool(X, W, B, padding=1)
    assert len(calls) == 1
    torch.testing.assert_close(out, ref_pool(X, W, B, 1, 1, "max", 2))
    clean_env.setenv("FASTCODEC_BACKEND", "torch")
    conv_relu_pool(X, W, B, padding=1)
    assert len(calls) == 1


# --------------------------------------------------------------------------------------------
# Triton backend (interpreter on CPU; small shapes)
# --------------------------------------------------------------------------------------------

TOL = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 1e-1}

TRITON_POOL_CASES = [
    (2, 3, 8, 8, 4, 3, 3, 1, 1, "max", 2),
    (1, 2, 9, 7, 5, 2, 4, 1, "same", "avg", 2),
    (1, 3, 11, 10, 4, 3, 3, 2, 1, "max", 3),
    (0, 3, 8, 8, 4, 3, 3, 1, 1, "avg", 2),
]
TRITON_UPSAMPLE_CASES = [
    (2, 3, 6, 5, 8, 3, 3, 1, 2),
    (1, 2, 5, 7, 12, 2, 2, "same", 2),
    (0, 3, 6, 6, 8, 3, 3, 1, 2),
]


@needs_triton
@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("dtype", KERNEL_DTYPES, ids=str)
@pytest.mark.parametrize("case", TRITON_POOL_CASES, ids=_pool_id)
def test_triton_backend_pool(case, dtype, layout):
    n, cin, h, w, cout, kh, kw, stride, padding, pool, k = case
    x, weight, bias = make(n, cin, h, w, cout, kh, kw, dtype, layout, seed=3)
    x, weight, bias = (t.to(TRITON_DEVICE) for t in (x, weight, bias))
    out = conv_relu_pool(x, weight, bias, stride=stride, padding=padding, pool=pool,
                         pool_size=k, backend="triton")
    ref = ref_pool(*(t.cpu().double() for t in (x, weight, bias)), stride, padding, pool, k)
    assert out.dtype == dtype and out.shape == ref.shape
    torch.testing.assert_close(out.cpu().double(), ref, atol=TOL[dtype], rtol=TOL[dtype])
    check_layout(out, x)


@needs_triton
@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("dtype", KERNEL_DTYPES, ids=str)
@pytest.mark.parametrize("case", TRITON_UPSAMPLE_CASES, ids=_up_id)
def test_triton_backend_upsample(case, dtype, layout):
    n, cin, h, w, cout, kh, kw, padding, scale = case
    x, weight, bias = make(n, cin, h, w, cout, kh, kw, dtype, layout, seed=4)
    x, weight, bias = (t.to(TRITON_DEVICE) for t in (x, weight, bias))
    out = conv_relu_upsample(x, weight, bias, padding=padding, scale=scale, backend="triton")
    ref = ref_upsample(*(t.cpu().double() for t in (x, weight, bias)), padding, scale)
    assert out.dtype == dtype and out.shape == ref.shape
    torch.testing.assert_close(out.cpu().double(), ref, atol=TOL[dtype], rtol=TOL[dtype])
    check_layout(out, x)


@needs_triton
def test_triton_backend_no_bias_and_grad():
    """Triton forward, PyTorch backward: gradients as the reference composition's."""
    x, weight, _ = make(1, 3, 8, 8, 4, 3, 3, seed=5)
    x, weight = x.to(TRITON_DEVICE).requires_grad_(), weight.to(TRITON_DEVICE).requires_grad_()
    out = conv_relu_pool(x, weight, None, padding=1, backend="triton")
    g = rand(out.shape, seed=9).to(TRITON_DEVICE)
    gx, gw = torch.autograd.grad(out, (x, weight), g)
    ref = ref_pool(x, weight, None, 1, 1, "max", 2)
    rx, rw = torch.autograd.grad(ref, (x, weight), g)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(gx, rx, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(gw, rw, atol=1e-4, rtol=1e-4)


@needs_triton
@pytest.mark.parametrize("pool,k", [("max", 2), ("max", 3), ("avg", 2), ("up", 2)])
def test_nan_triton_backend(pool, k):
    """The Triton kernels propagate NaN through the ReLU and the max pooling, as the composition."""
    x, weight, bias = nan_inputs(torch.float32)
    ref64 = [t.double() for t in (x, weight, bias)]
    if pool == "up":
        out = conv_relu_upsample(*(t.to(TRITON_DEVICE) for t in (x, weight, bias)), padding=1,
                                 backend="triton")
        ref = ref_upsample(*ref64, 1, 2)
    else:
        out = conv_relu_pool(*(t.to(TRITON_DEVICE) for t in (x, weight, bias)), padding=1,
                             pool=pool, pool_size=k, backend="triton")
        ref = ref_pool(*ref64, 1, 1, pool, k)
    assert ref.isnan().any() and not ref.isnan().all()
    torch.testing.assert_close(out.cpu().double(), ref, atol=1e-4, rtol=1e-4, equal_nan=True)


def test_public_exports():
    assert set(ops.__all__) >= {"conv_relu_pool", "conv_relu_upsample"}
    assert ops.BACKENDS == ("triton", "cuda", "torch")
    assert ops.ENV_VAR == "FASTCODEC_BACKEND"
