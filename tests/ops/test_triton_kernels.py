"""Triton kernels against float64 references: fused conv+ReLU+pool and conv+ReLU+pixel-shuffle.

On a CPU-only machine the kernels run in the Triton interpreter (see conftest.py), so the shapes are
small and the grid is a covering subset rather than a full product: every geometry (kernel sizes
1/2/3/4/5/7, kh != kw, strides 1/2, paddings 0/1/2 and asymmetric "same", odd sizes, Cin/Cout off the
block sizes, batch 1-2) runs in every dtype x pool kind x layout (NCHW / channels_last), with the
K walk (default / forced flat / forced tap-major) rotating; one geometry runs the full product.  The GPU-only
tests (larger, realistic layers) run where CUDA is available.

Every output buffer is poisoned with NaN at allocation, so an element the kernel fails to write
shows up as a mismatch.
"""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("triton")

from _fastcodec_ops_test_helpers import (  # noqa: E402  (conftest: interpreter switch, references)
    DEVICE,
    INTERPRET,
    conv_out_size,
    reference_conv_relu_pool,
    reference_conv_relu_upsample,
    same_padding,
)

from fastcodec.kernels import configs as configs_mod  # noqa: E402
from fastcodec.kernels.conv_relu_pool import (  # noqa: E402
    conv_relu_pool_triton,
    cudnn_conv_tf32,
    use_tf32,
)
from fastcodec.kernels.conv_relu_upsample import conv_relu_upsample_triton  # noqa: E402

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
DTYPE_IDS = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
LAYOUTS = ["nchw", "channels_last"]


def _rtol(dtype: torch.dtype) -> float:
    if dtype == torch.float32:
        # Exact fp32 in the interpreter; TF32 products on GPUs when cuDNN would use them.
        tf32 = DEVICE == "cuda" and cudnn_conv_tf32()
        return 5e-3 if tf32 else 1e-4
    return {torch.float16: 2e-3, torch.bfloat16: 2e-2}[dtype]


@pytest.fixture(autouse=True)
def poison_empty(monkeypatch):
    """Launchers allocate with ``torch.empty``: fill every fresh floating buffer with NaN."""
    real_empty = torch.empty

    def poisoned(*args, **kwargs):
        t = real_empty(*args, **kwargs)
        if t.is_floating_point():
            t.fill_(float("nan"))
        return t

    monkeypatch.setattr(torch, "empty", poisoned)


def _rand(shape, dtype, *, scale=1.0, gen):
    """Random, never-zero values: sign * U(0.1, 1) * scale, rounded to ``dtype``."""
    mag = torch.rand(shape, generator=gen, dtype=torch.float64) * 0.9 + 0.1
    sign = torch.where(torch.rand(shape, generator=gen) < 0.5, -1.0, 1.0).to(torch.float64)
    return (sign * mag * scale).to(dtype)


def _make_inputs(n, cin, cout, h, w, kh, kw, dtype, layout, *, seed, bias=True):
    gen = torch.Generator().manual_seed(seed)
    fan_in = cin * kh * kw
    x = _rand((n, cin, h, w), dtype, gen=gen)
    weight = _rand((cout, cin, kh, kw), dtype, scale=1.7 / math.sqrt(fan_in), gen=gen)
    b = _rand((cout,), dtype, scale=0.3, gen=gen) if bias else None
    x = x.to(DEVICE)
    weight = weight.to(DEVICE)
    b = None if b is None else b.to(DEVICE)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    return x, weight, b


def _check(out, ref, x, weight, *, layout, expect_shape):
    assert out.dtype == x.dtype
    assert out.device == x.device
    assert tuple(out.shape) == tuple(expect_shape)
    if layout == "channels_last":
        assert out.is_contiguous(memory_format=torch.channels_last)
    else:
        assert out.is_contiguous()
    assert tuple(ref.shape) == tuple(expect_shape)
    if out.numel() == 0:
        return
    got = out.detach().to("cpu", torch.float64)
    assert not torch.isnan(got).any(), "unwritten (NaN-poisoned) or NaN outputs"
    k = weight.shape[1] * weight.shape[2] * weight.shape[3]
    # Scale of one output: sqrt(K) typical |x*w| products (plus the output's own magnitude).
    scale = math.sqrt(k) * x.detach().abs().double().mean().item() * weight.detach().abs().double().mean().item()
    rtol = _rtol(x.dtype)
    err = (got - ref).abs()
    tol = rtol * (ref.abs() + scale)
    bad = err > tol
    assert not bad.any(), (
        f"{int(bad.sum())}/{err.numel()} mismatches; max err {err.max().item():.3e}, "
        f"max err/tol {(err / tol).max().item():.3f}, scale {scale:.3e}"
    )


# ---------------------------------------------------------------------------------------------
# conv + ReLU + pool
# ---------------------------------------------------------------------------------------------

# (n, cin, cout, h, w, kh, kw, stride, padding); padding: int, (top, left, bottom, right), or "same".
POOL_GEOMS = [
    (1, 3, 5, 9, 11, 1, 1, 1, 0),            # 1x1, odd sizes
    (2, 5, 17, 10, 9, 2, 2, 1, "same"),       # even kernel: pad_top 0, pad_bottom 1 (asymmetric)
    (1, 17, 5, 11, 13, 3, 3, 1, 1),           # Cin over one 16-block
    (2, 3, 17, 13, 12, 3, 3, 2, "same"),      # stride 2
    (1, 5, 3, 12, 11, 4, 4, 2, "same"),       # even kernel, stride 2, asymmetric
    (1, 3, 17, 15, 13, 5, 5, 2, 2),           # 5x5 stride 2 pad 2 (codec first layer)
    (2, 5, 5, 11, 10, 7, 7, 1, 2),            # 7x7 with pad 2 (shrinks)
    (1, 17, 33, 8, 9, 3, 5, 1, (1, 2, 1, 2)),  # kh != kw
    (1, 40, 9, 7, 7, 3, 1, 1, (0, 0, 2, 0)),  # two channel blocks (tap path at BLOCK_K=32), pad bottom only
    (2, 3, 5, 5, 5, 3, 3, 1, 0),              # 3x3 conv output -> one pooled pixel (floor)
]


def _resolve_padding(h, w, kh, kw, stride, padding):
    if padding == "same":
        out_h, top, _ = same_padding(h, kh, stride)
        out_w, left, _ = same_padding(w, kw, stride)
        return top, left, out_h, out_w
    if isinstance(padding, int):
        padding = (padding,) * 4
    top, left, bottom, right = padding
    return top, left, conv_out_size(h, kh, stride, top, bottom), conv_out_size(w, kw, stride, left, right)


def _pool_case(geom, dtype, pool, layout, *, flat_k=None, pool_size=2, bias=True, seed=0):
    n, cin, cout, h, w, kh, kw, stride, padding = geom
    top, left, out_h, out_w = _resolve_padding(h, w, kh, kw, stride, padding)
    x, weight, b = _make_inputs(n, cin, cout, h, w, kh, kw, dtype, layout, seed=seed, bias=bias)
    kwargs = dict(stride=stride, pad_top=top, pad_left=left, out_h=out_h, out_w=out_w, pool=pool,
                  pool_size=pool_size)
    out = conv_relu_pool_triton(x, weight, b, **kwargs, _flat_k=flat_k)
    ref = reference_conv_relu_pool(x, weight, b, **kwargs)
    _check(out, ref, x, weight, layout=layout,
           expect_shape=(n, cout, out_h // pool_size, out_w // pool_size))
    return out


def _pool_params():
    params = []
    for gi, geom in enumerate(POOL_GEOMS):
        for di, dtype in enumerate(DTYPES):
            for pi, pool in enumerate(["max", "avg"]):
                for li, layout in enumerate(LAYOUTS):
                    flat_k = [None, True, False][(gi + di + pi + li) % 3]  # default, forced flat, forced tap
                    k = "def" if flat_k is None else ("flat" if flat_k else "tap")
                    params.append(pytest.param(
                        geom, dtype, pool, layout, flat_k,
                        id=f"g{gi}-k{geom[5]}x{geom[6]}s{geom[7]}-{DTYPE_IDS[dtype]}-{pool}-{layout}-{k}"))
    return params


@pytest.mark.parametrize("geom,dtype,pool,layout,flat_k", _pool_params())
def test_conv_relu_pool(geom, dtype, pool, layout, flat_k):
    _pool_case(geom, dtype, pool, layout, flat_k=flat_k)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("flat_k", [True, False], ids=["flat", "tap"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS.get)
@pytest.mark.parametrize("pool", ["max", "avg"])
def test_conv_relu_pool_full_cross(pool, dtype, flat_k, layout):
    """Every dtype x pool x K walk x layout on one asymmetrically padded 3x3 stride-1 geometry."""
    _pool_case((1, 5, 17, 7, 9, 3, 3, 1, (0, 1, 1, 0)), dtype, pool, layout, flat_k=flat_k, seed=3)


@pytest.mark.parametrize("pool_size", [1, 3])
@pytest.mark.parametrize("pool", ["max", "avg"])
def test_conv_relu_pool_other_pool_sizes(pool, pool_size):
    """Non power-of-two windows (3x3 -> 9 of 16 rows used) and no pooling at all."""
    _pool_case((1, 5, 6, 11, 10, 3, 3, 1, 1), torch.float16, pool, "channels_last", pool_size=pool_size)


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_conv_relu_pool_no_bias(pool):
    _pool_case((2, 3, 5, 9, 8, 3, 3, 1, 1), torch.float32, pool, "nchw", bias=False)


def test_conv_relu_pool_negative_bias_avg():
    """avg pools relu(acc + b) per position (not relu(mean + b)): strongly negative biases differ."""
    n, cin, cout, h, w = 1, 3, 5, 6, 6
    x, weight, _ = _make_inputs(n, cin, cout, h, w, 3, 3, torch.float32, "nchw", seed=5)
    b = torch.full((cout,), -0.5, device=DEVICE)
    kwargs = dict(stride=1, pad_top=1, pad_left=1, out_h=h, out_w=w, pool="avg", pool_size=2)
    out = conv_relu_pool_triton(x, weight, b, **kwargs)
    ref = reference_conv_relu_pool(x, weight, b, **kwargs)
    _check(out, ref, x, weight, layout="nchw", expect_shape=(n, cout, 3, 3))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_conv_relu_pool_strided_input(layout):
    """A non-contiguous input view (channel stride 2, cropped rows) is read through its strides."""
    gen = torch.Generator().manual_seed(11)
    base = _rand((2, 10, 12, 9), torch.float16, gen=gen).to(DEVICE)
    if layout == "channels_last":
        base = base.contiguous(memory_format=torch.channels_last)
    x = base[:, ::2, 1:]  # [2, 5, 11, 9]
    assert not x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)
    weight = _rand((6, 5, 3, 3), torch.float16, scale=0.3, gen=gen).to(DEVICE)
    b = _rand((6,), torch.float16, scale=0.3, gen=gen).to(DEVICE)
    kwargs = dict(stride=1, pad_top=1, pad_left=1, out_h=11, out_w=9, pool="max", pool_size=2)
    out = conv_relu_pool_triton(x, weight, b, **kwargs)
    ref = reference_conv_relu_pool(x, weight, b, **kwargs)
    _check(out, ref, x, weight, layout="nchw", expect_shape=(2, 6, 5, 4))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", ["batch0", "pooled0"])
def test_conv_relu_pool_empty(case, layout, monkeypatch):
    """Empty outputs come back with the right shape/dtype/format and no kernel launch."""
    n, out_h = (0, 8) if case == "batch0" else (2, 1)
    x, weight, b = _make_inputs(n, 3, 5, 8, 8, 3, 3, torch.float16, layout, seed=0)
    if case == "batch0" and layout == "channels_last":
        x = torch.empty_strided((0, 3, 8, 8), (192, 1, 24, 3), dtype=torch.float16, device=DEVICE)
    monkeypatch.setattr(configs_mod, "tuned_kernel", lambda name: pytest.fail("kernel launched"))
    out = conv_relu_pool_triton(x, weight, b, stride=1, pad_top=1, pad_left=1, out_h=out_h, out_w=8,
                                pool="max", pool_size=2)
    assert out.shape == (n, 5, out_h // 2, 4)
    assert out.dtype == torch.float16
    if case == "pooled0" and layout == "channels_last":
        assert out.is_contiguous(memory_format=torch.channels_last)


# ---------------------------------------------------------------------------------------------
# conv + ReLU + pixel shuffle
# ---------------------------------------------------------------------------------------------

# (n, cin, c, h, w, k, padding, scale): conv output channels = c * scale**2.
UP_GEOMS = [
    (1, 5, 3, 7, 6, 1, 0, 2),          # 1x1, 12 conv channels (last-layer shape)
    (2, 17, 5, 5, 7, 3, 1, 2),         # 20 conv channels, odd sizes
    (1, 3, 4, 6, 5, 5, "same", 2),     # 5x5 "same"
    (1, 6, 9, 5, 6, 2, "same", 2),     # even kernel: asymmetric "same"
    (1, 40, 2, 4, 5, 3, (0, 2, 1, 0), 2),  # two channel blocks, asymmetric explicit padding
    (1, 4, 2, 5, 4, 3, 1, 3),          # scale 3 (18 conv channels)
]


def _up_case(geom, dtype, layout, *, flat_k=None, bias=True, seed=0):
    n, cin, c, h, w, k, padding, s = geom
    top, left, out_h, out_w = _resolve_padding(h, w, k, k, 1, padding)
    x, weight, b = _make_inputs(n, cin, c * s * s, h, w, k, k, dtype, layout, seed=seed, bias=bias)
    kwargs = dict(pad_top=top, pad_left=left, out_h=out_h, out_w=out_w, scale=s)
    out = conv_relu_upsample_triton(x, weight, b, **kwargs, _flat_k=flat_k)
    ref = reference_conv_relu_upsample(x, weight, b, **kwargs)
    _check(out, ref, x, weight, layout=layout, expect_shape=(n, c, out_h * s, out_w * s))
    return out


def _up_params():
    params = []
    for gi, geom in enumerate(UP_GEOMS):
        for di, dtype in enumerate(DTYPES):
            for li, layout in enumerate(LAYOUTS):
                flat_k = [None, True, False][(gi + di + li) % 3]
                k = "def" if flat_k is None else ("flat" if flat_k else "tap")
                params.append(pytest.param(
                    geom, dtype, layout, flat_k,
                    id=f"g{gi}-k{geom[5]}-x{geom[7]}-{DTYPE_IDS[dtype]}-{layout}-{k}"))
    return params


@pytest.mark.parametrize("geom,dtype,layout,flat_k", _up_params())
def test_conv_relu_upsample(geom, dtype, layout, flat_k):
    _up_case(geom, dtype, layout, flat_k=flat_k)


def test_conv_relu_upsample_no_bias():
    _up_case((2, 3, 2, 5, 6, 3, 1, 2), torch.float32, "channels_last", bias=False)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_conv_relu_upsample_batch0(layout, monkeypatch):
    x = torch.empty((0, 4, 5, 6), dtype=torch.bfloat16, device=DEVICE)
    if layout == "channels_last":
        x = torch.empty_strided((0, 4, 5, 6), (120, 1, 24, 4), dtype=torch.bfloat16, device=DEVICE)
    weight = torch.ones((12, 4, 3, 3), dtype=torch.bfloat16, device=DEVICE)
    monkeypatch.setattr(configs_mod, "tuned_kernel", lambda name: pytest.fail("kernel launched"))
    out = conv_relu_upsample_triton(x, weight, None, pad_top=1, pad_left=1, out_h=5, out_w=6, scale=2)
    assert out.shape == (0, 3, 10, 12)
    assert out.dtype == torch.bfloat16


def test_conv_relu_upsample_rejects_bad_channel_count():
    x = torch.ones((1, 4, 5, 6), device=DEVICE)
    with pytest.raises(ValueError):
        conv_relu_upsample_triton(x, torch.ones((10, 4, 3, 3), device=DEVICE), None, pad_top=1, pad_left=1,
                                  out_h=5, out_w=6, scale=2)


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------


def test_registry_is_consistent():
    from fastcodec.kernels.configs import KERNELS

    assert set(KERNELS) == {"conv_relu_pool", "conv_relu_upsample"}
    for name, spec in KERNELS.items():
        assert 4 <= len(spec.configs) <= 8
        for cfg in [*spec.configs, spec.interpret_config]:
            assert set(cfg.kwargs) == {"BLOCK_M", "BLOCK_N", "BLOCK_K"}
            assert cfg.kwargs["BLOCK_K"] >= 16 and cfg.kwargs["BLOCK_N"] >= 16
        arg_names = spec.fn.arg_names
        assert set(spec.key) <= set(arg_names)
        assert set(spec.hints) <= set(arg_names)
        for dtype in DTYPES:
            signature, constexprs = spec.signatures[dtype]
            covered = set(signature) | set(constexprs) | {"BLOCK_M", "BLOCK_N", "BLOCK_K"}
            assert covered == set(arg_names), name
            assert signature["x_ptr"] == "*" + DTYPE_IDS[dtype]
        # Both autotuners build (the GPU one cannot run here, but its construction must work).
        assert len(spec.autotuned(interpret=False).configs) == len(spec.configs)
        assert spec.autotuned(interpret=True).configs == [spec.interpret_config]


def test_prune_keeps_fitting_configs():
    from fastcodec.kernels.configs import KERNELS

    spec = KERNELS["conv_relu_pool"]
    x = torch.empty((1, 8, 8, 8), dtype=torch.float32)
    kept = spec.prune(spec.configs, {"Cout": 24, "x_ptr": x}, WIN=4)
    assert kept and all(c.kwargs["BLOCK_N"] <= 32 for c in kept)
    kept = spec.prune(spec.configs, {"Cout": 192, "x_ptr": x}, WIN=16)  # 3x3 windows
    assert kept and all(c.kwargs["BLOCK_M"] * 16 * c.kwargs["BLOCK_N"] <= 128 * 32 * c.num_warps for c in kept)


# ---------------------------------------------------------------------------------------------
# GPU only: realistic layer sizes, against cuDNN as well as the float64 reference.
# ---------------------------------------------------------------------------------------------

GPU_POOL_LAYERS = [
    (2, 3, 128, 67, 93, 5, 5, 2, "same"),
    (2, 128, 192, 48, 40, 3, 3, 1, 1),
    (1, 192, 192, 33, 31, 4, 4, 1, "same"),
    (1, 64, 96, 30, 30, 7, 7, 2, 3),
]


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS.get)
@pytest.mark.parametrize("pool", ["max", "avg"])
@pytest.mark.parametrize("geom", GPU_POOL_LAYERS, ids=lambda g: f"{g[1]}to{g[2]}-k{g[5]}s{g[7]}")
def test_gpu_conv_relu_pool_layers(geom, pool, dtype, layout):
    _pool_case(geom, dtype, pool, layout, seed=7)


GPU_UP_LAYERS = [
    (2, 192, 128, 24, 20, 3, 1, 2),
    (1, 128, 3, 45, 37, 5, "same", 2),
    (1, 96, 48, 31, 33, 1, 0, 2),
]


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS.get)
@pytest.mark.parametrize("geom", GPU_UP_LAYERS, ids=lambda g: f"{g[1]}to{g[2]}x{g[7]}-k{g[5]}")
def test_gpu_conv_relu_upsample_layers(geom, dtype, layout):
    _up_case(geom, dtype, layout, seed=9)


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=DTYPE_IDS.get)
def test_gpu_matches_cudnn(dtype):
    """Same numbers as the unfused torch ops on the GPU, within the dtype's rounding."""
    import torch.nn.functional as F

    x, weight, b = _make_inputs(2, 64, 96, 40, 36, 3, 3, dtype, "channels_last", seed=13)
    out = conv_relu_pool_triton(x, weight, b, stride=1, pad_top=1, pad_left=1, out_h=40, out_w=36,
                                pool="max", pool_size=2)
    want = F.max_pool2d(F.relu(F.conv2d(x, weight, b, 1, 1)), 2)
    torch.testing.assert_close(out, want, rtol=_rtol(dtype) * 4, atol=_rtol(dtype) * 4)
    up = conv_relu_upsample_triton(x, weight[:64], b[:64], pad_top=1, pad_left=1, out_h=40, out_w=36, scale=2)
    want = F.pixel_shuffle(F.relu(F.conv2d(x, weight[:64], b[:64], 1, 1)), 2)
    torch.testing.assert_close(up, want, rtol=_rtol(dtype) * 4, atol=_rtol(dtype) * 4)


@pytest.fixture
def restore_fp32_precision():
    """Puts torch's fp32-precision flags (the per-op API of newer torch) back after the test."""
    b = torch.backends
    if not hasattr(getattr(b.cudnn, "conv", None), "fp32_precision"):
        pytest.skip("this torch has no torch.backends.cudnn.conv.fp32_precision")
    nodes = (b, b.cudnn, b.cudnn.conv, b.cudnn.rnn)  # parents first
    saved = [node.fp32_precision for node in nodes]
    yield b
    for node, value in zip(nodes, saved):
        node.fp32_precision = value


def test_tf32_follows_cudnn_conv_precision(restore_fp32_precision):
    b = restore_fp32_precision
    b.cudnn.conv.fp32_precision = "ieee"  # made the legacy allow_tf32 read raise
    assert not use_tf32(torch.float32)
    x, weight, bias, *_ = _make_inputs(1, 3, 4, 5, 6, 3, 3, torch.float32, "nchw", seed=40)
    out = conv_relu_pool_triton(x, weight, bias, stride=1, pad_top=1, pad_left=1, out_h=5, out_w=6,
                                pool="max", pool_size=2)
    want = reference_conv_relu_pool(x, weight, bias, stride=1, pad_top=1, pad_left=1, out_h=5,
                                    out_w=6, pool="max", pool_size=2)
    torch.testing.assert_close(out.double().cpu(), want, rtol=1e-4, atol=1e-4)
    b.cudnn.conv.fp32_precision = "tf32"
    assert use_tf32(torch.float32) and not use_tf32(torch.float16)
    # "none" inherits: from torch.backends.cudnn, then from torch.backends
    b.cudnn.conv.fp32_precision, b.cudnn.fp32_precision = "none", "tf32"
    assert use_tf32(torch.float32)
    b.cudnn.fp32_precision, b.fp32_precision = "none", "ieee"
    assert not use_tf32(torch.float32)
    b.fp32_precision = "tf32"
    assert use_tf32(torch.float32)
    b.fp32_precision = "none"
    assert not use_tf32(torch.float32)


def test_interpreter_mode_matches_device():
    """The interpreter runs exactly when there is no GPU (set by conftest before kernel imports)."""
    assert INTERPRET == (not torch.cuda.is_available())


def test_aot_compile_for_sm90(tmp_path):
    """Each kernel compiles ahead of time for Hopper from the registry (no GPU needed; ptxas runs),
    with NaN-propagating maxima (the interpreter's ``tl.maximum`` propagates NaN whatever its
    ``propagate_nan``: only the PTX shows the ReLU's NaN handling without a GPU).

    Runs in a subprocess: this session's kernels are interpreter objects (TRITON_INTERPRET=1).
    """
    import os
    import subprocess
    import sys

    script = (
        "import torch\n"
        "from triton.backends.compiler import GPUTarget\n"
        "from fastcodec.kernels.configs import KERNELS\n"
        "for name, spec in KERNELS.items():\n"
        "    k = spec.compile(torch.float16, spec.configs[0], GPUTarget('cuda', 90, 32))\n"
        "    assert 'wgmma' in k.asm['ptx'] and k.asm['cubin'], name\n"
        "    # NaN-propagating float maxima only (ReLU, max pooling): max.NaN.f32, never max.f32\n"
        "    assert 'max.NaN.f32' in k.asm['ptx'] and 'max.f32' not in k.asm['ptx'], name\n"
        "    print(name, 'shared', k.metadata.shared)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path / "cache")
    # Run outside the checkout, so the installed package is imported, not the source tree.
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=300)
    if run.returncode != 0 and "ptxas" in run.stderr and "not found" in run.stderr.lower():
        pytest.skip("no ptxas in this Triton installation")
    assert run.returncode == 0, run.stdout + run.stderr
