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

import contextlib
import math
import types

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
from fastcodec.kernels import conv_relu_pool as kpool  # noqa: E402
from fastcodec.kernels import conv_relu_upsample as kup  # noqa: E402
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
    monkeypatch.setattr(configs_mod, "tuned_kernel", lambda name, device=None: pytest.fail("kernel launched"))
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
    monkeypatch.setattr(configs_mod, "tuned_kernel", lambda name, device=None: pytest.fail("kernel launched"))
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
        assert 4 <= len(spec.configs) <= 10
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


def _label(c):
    return (c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.kwargs["BLOCK_K"], c.num_warps, c.num_stages)


# (opt-in shared memory per block, arch) of A100, H100, RTX 3090/4090, and an unknown device.
DEVICES = [(166912, 80), (232448, 90), (101376, 86), (configs_mod.DEFAULT_SMEM_LIMIT, None)]


def _old_prune(configs, cout, elsize, win):
    """The prune before the large-window configs (fixed 160 KB budget): its 2x2 choices are tuned."""
    n_cap = max(16, 1 << (cout - 1).bit_length())

    def fp(c):
        rows = c.kwargs["BLOCK_M"] * win
        return (rows, rows * c.kwargs["BLOCK_N"] / (32 * c.num_warps),
                c.num_stages * (rows + c.kwargs["BLOCK_N"]) * c.kwargs["BLOCK_K"] * elsize)

    kept = [c for c in configs if not (c.kwargs["BLOCK_N"] > n_cap or fp(c)[0] < 16 or fp(c)[1] > 128
                                       or fp(c)[2] > 160 * 1024)]
    return kept or [min(configs, key=lambda c: fp(c)[1:])]


@pytest.mark.parametrize("elsize", [2, 4])
@pytest.mark.parametrize("cout", [3, 16, 24, 48, 64, 192, 4096])
def test_prune_keeps_the_2x2_choices_on_a100_and_h100(cout, elsize):
    """The small-BLOCK_M configs never enter 2x2 pooling (nor the upsample kernel): the tuned
    choices on sm_80/sm_90 are those of the former fixed-budget prune."""
    pool_cfgs = configs_mod.KERNELS["conv_relu_pool"].configs
    old_pool = [c for c in pool_cfgs if c.kwargs["BLOCK_M"] >= 16]  # the configs before them
    up_cfgs = configs_mod.KERNELS["conv_relu_upsample"].configs
    for limit, arch in DEVICES[:2]:
        got = configs_mod.prune_configs(pool_cfgs, cout=cout, elsize=elsize, win=4, smem_limit=limit, arch=arch)
        assert [_label(c) for c in got] == [_label(c) for c in _old_prune(old_pool, cout, elsize, 4)]
        got = configs_mod.prune_configs(up_cfgs, cout=cout, elsize=elsize, smem_limit=limit, arch=arch)
        assert [_label(c) for c in got] == [_label(c) for c in _old_prune(up_cfgs, cout, elsize, 1)]


@pytest.mark.parametrize("pool_size", [3, 4, 5, 6, 7])
@pytest.mark.parametrize("elsize", [2, 4])
@pytest.mark.parametrize("cout", [8, 64, 4096])
def test_prune_fits_large_windows_in_shared_memory(pool_size, elsize, cout):
    """Each pooled pixel takes next_pow2(P*P) dot rows: every config kept for a large window fits
    the device's shared memory (estimate), has a valid dot, and the accumulators are bounded."""
    win = 1 << (pool_size * pool_size - 1).bit_length()
    spec = configs_mod.KERNELS["conv_relu_pool"]
    for limit, arch in DEVICES:
        kept = configs_mod.prune_configs(spec.configs, cout=cout, elsize=elsize, win=win, smem_limit=limit,
                                         arch=arch)
        assert kept
        for c in kept:
            rows = c.kwargs["BLOCK_M"] * win
            assert configs_mod.smem_estimate(c, win, elsize, arch) <= limit
            assert rows >= 64 and rows * c.kwargs["BLOCK_N"] / (32 * c.num_warps) <= 64
            assert c.kwargs["BLOCK_M"] < 16  # the large-window configs (the 2x2 ones spill there)


def test_prune_fallback_is_the_smallest_shared_memory():
    spec = configs_mod.KERNELS["conv_relu_pool"]
    for win, elsize, arch in [(4, 4, 80), (16, 2, 90), (64, 4, None), (1, 2, 80)]:
        kept = configs_mod.prune_configs(spec.configs, cout=4096, elsize=elsize, win=win, smem_limit=1024,
                                         arch=arch)
        valid = [c for c in spec.configs if c.kwargs["BLOCK_M"] * win >= 16]  # tl.dot needs 16 rows
        smallest = min(configs_mod.smem_estimate(c, win, elsize, arch) for c in valid)
        assert len(kept) == 1 and kept[0] in valid
        assert configs_mod.smem_estimate(kept[0], win, elsize, arch) == smallest
    # Cout below every BLOCK_N: the narrowest configs that fit otherwise (the tuned 2x2 choice).
    kept = configs_mod.prune_configs(spec.configs, cout=3, elsize=4, win=4, smem_limit=166912, arch=80)
    assert [_label(c) for c in kept] == [(32, 32, 32, 4, 4)]


def test_smem_estimate_by_arch():
    c = configs_mod._cfg(32, 64, 32, 4, 3)
    assert configs_mod.smem_estimate(c, 4, 2, 90) == 3 * (128 + 64) * 32 * 2  # every stage buffered
    assert configs_mod.smem_estimate(c, 4, 2, None) == 3 * (128 + 64) * 32 * 2
    assert configs_mod.smem_estimate(c, 4, 2, 80) == 2 * (128 + 64) * 32 * 2  # cp.async: stages - 1
    assert configs_mod.smem_estimate(c, 16, 4, 86) == 2 * (512 + 64) * 32 * 4


def test_prune_asks_the_input_device(monkeypatch):
    """The autotuner's prune takes the limit of x's device (opt-in shared memory per block), from
    torch.cuda.get_device_properties when x is a CUDA tensor; a CPU tensor gets the default."""
    asked = []

    class Props:
        major, minor, shared_memory_per_block_optin = 8, 6, 101376

    def props(index):
        asked.append(index)
        return Props

    monkeypatch.setattr(configs_mod, "_DEVICE_SMEM", {})
    monkeypatch.setattr(torch.cuda, "get_device_properties", props)
    assert configs_mod.device_smem_info(torch.device("cuda", 1)) == (101376, 86)
    assert configs_mod.device_smem_info("cuda:1") == (101376, 86) and asked == [1]  # cached
    assert configs_mod.device_smem_info(torch.device("cpu")) == (configs_mod.DEFAULT_SMEM_LIMIT, None)

    seen = []
    real = configs_mod.prune_configs

    def spy(configs, **kw):
        seen.append(kw)
        return real(configs, **kw)

    monkeypatch.setattr(configs_mod, "prune_configs", spy)
    monkeypatch.setattr(configs_mod, "device_smem_info", lambda device: (12345, 75))
    spec = configs_mod.KERNELS["conv_relu_pool"]
    spec.prune(spec.configs, {"Cout": 64, "x_ptr": torch.empty(1, dtype=torch.float16)}, WIN=16)
    assert seen[-1] == dict(cout=64, elsize=2, win=16, smem_limit=12345, arch=75)


LARGE_WINDOW_CASES = [
    pytest.param(p, _label(c), id=f"pool{p}-{'x'.join(map(str, _label(c)[:3]))}w{c.num_warps}s{c.num_stages}")
    for p in (3, 5, 7)
    for c in configs_mod.KERNELS["conv_relu_pool"].kept_configs(
        torch.float16, arch=90, smem_limit=232448, POOL=p, WIN=1 << (p * p - 1).bit_length())
]


@pytest.mark.skipif(not INTERPRET, reason="runs a chosen config through the interpreter")
@pytest.mark.parametrize("pool", ["max", "avg"])
@pytest.mark.parametrize("pool_size,cfg", LARGE_WINDOW_CASES)
def test_large_window_configs_are_correct(pool_size, cfg, pool, monkeypatch):
    """Each config the prune keeps for 3x3 / 5x5 / 7x7 pooling computes the right thing."""
    spec = configs_mod.KERNELS["conv_relu_pool"]
    monkeypatch.setattr(spec, "interpret_config", configs_mod._cfg(*cfg))
    monkeypatch.setattr(configs_mod, "_TUNED", {})
    layout = "channels_last" if pool == "max" else "nchw"
    _pool_case((2, 5, 7, 17, 16, 3, 3, 1, 1), torch.float16, pool, layout, pool_size=pool_size, seed=pool_size)


# ---------------------------------------------------------------------------------------------
# Launchers: device guard, int32 offsets, batch chunks
# ---------------------------------------------------------------------------------------------


def test_device_guard_enters_the_tensors_device(monkeypatch):
    entered = []
    monkeypatch.setattr(torch.cuda, "device", lambda d: entered.append(d) or contextlib.nullcontext())
    fake = types.SimpleNamespace(device=torch.device("cuda", 1))
    with kpool.device_guard(fake):
        pass
    assert entered == [torch.device("cuda", 1)]
    with kpool.device_guard(torch.empty(1)):  # CPU (interpreter): nothing to switch
        pass
    assert len(entered) == 1


def test_each_kind_of_device_gets_its_own_autotuner(monkeypatch):
    """Triton's autotune cache knows sizes and dtypes, not devices: a launcher per device kind
    (shared memory, compute capability) keeps an A10's choice away from an H100's."""
    kinds = {0: (232448, 90), 1: (101376, 86), 2: (232448, 90)}
    monkeypatch.setattr(configs_mod, "device_smem_info", lambda d: kinds[torch.device(d).index])
    monkeypatch.setattr(configs_mod, "_TUNED", {})
    h100, a10, h100_again = (configs_mod.tuned_kernel("conv_relu_pool", torch.device("cuda", i))
                             for i in range(3))
    assert h100 is h100_again and a10 is not h100
    assert configs_mod.tuned_kernel("conv_relu_upsample", torch.device("cuda", 0)) is not h100
    assert configs_mod.tuned_kernel("conv_relu_pool") is configs_mod.tuned_kernel("conv_relu_pool")


class _LaunchSpy:
    """Stands in for ``tuned_kernel(name, device)``: records each launch (grid, N, inside the device guard)
    and forwards it to the real kernel."""

    def __init__(self, real, guard_depth):
        self.real, self.guard_depth, self.launches = real, guard_depth, []

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.launches.append(dict(n=args[4], in_guard=self.guard_depth[0] > 0))
            return self.real[grid](*args, **kwargs)
        return launch


def _spy_launches(monkeypatch):
    """Replaces both launchers' device guard by a depth counter and ``tuned_kernel`` by spies."""
    depth = [0]

    @contextlib.contextmanager
    def guard(t):
        depth[0] += 1
        try:
            yield
        finally:
            depth[0] -= 1

    for module in (kpool, kup):
        monkeypatch.setattr(module, "device_guard", guard)
    real_tuned = configs_mod.tuned_kernel
    spies = {}

    def tuned(name, device=None):
        if name not in spies:
            spies[name] = _LaunchSpy(real_tuned(name, device), depth)
        return spies[name]

    monkeypatch.setattr(configs_mod, "tuned_kernel", tuned)
    return spies


@pytest.mark.parametrize("layout", LAYOUTS)
def test_batches_are_launched_in_chunks_of_images(layout, monkeypatch):
    """A batch whose row count (N*PH*PW, N*OH*OW) exceeds the per-launch limit runs as several
    launches over views of whole images, inside the device guard, with the same result."""
    # Every image fills whole tiles of the interpreter's config (16 pooled pixels, 64 conv
    # pixels), so it sits at the same tile rows in both launches: numpy's matmul (OpenBLAS)
    # may round a row differently at another position in the tile, which would make the
    # comparison depend on the BLAS build rather than on the chunking.
    spies = _spy_launches(monkeypatch)
    whole = _pool_case((5, 3, 6, 8, 8, 3, 3, 1, 1), torch.float16, "max", layout, seed=21)
    assert [(e["n"], e["in_guard"]) for e in spies["conv_relu_pool"].launches] == [(5, True)]
    # 4x4 pooled pixels per image; at most 2 images (32 rows) per launch -> 2 + 2 + 1.
    monkeypatch.setattr(kpool, "max_launch_rows", lambda cout: 33)
    chunked = _pool_case((5, 3, 6, 8, 8, 3, 3, 1, 1), torch.float16, "max", layout, seed=21)
    assert [(e["n"], e["in_guard"]) for e in spies["conv_relu_pool"].launches[1:]] == [
        (2, True), (2, True), (1, True)]
    torch.testing.assert_close(chunked, whole, rtol=0, atol=0)

    monkeypatch.setattr(kup, "max_launch_rows", lambda cout: 2 * 4 * 8)  # 4x8 conv pixels each
    up = _up_case((3, 4, 2, 4, 8, 3, 1, 2), torch.float32, layout, seed=22)
    assert [(e["n"], e["in_guard"]) for e in spies["conv_relu_upsample"].launches] == [
        (2, True), (1, True)]
    monkeypatch.setattr(kup, "max_launch_rows", lambda cout: 10**9)
    torch.testing.assert_close(up, _up_case((3, 4, 2, 4, 8, 3, 1, 2), torch.float32, layout,
                                            seed=22), rtol=0, atol=0)


def test_batch_chunks():
    assert kpool.batch_chunks(5, 12, 25) == [(0, 2), (2, 4), (4, 5)]
    assert kpool.batch_chunks(3, 12, 36) == [(0, 3)]
    assert kpool.batch_chunks(3, 100, 10) == [(0, 1), (1, 2), (2, 3)]  # one image at least
    assert kpool.batch_chunks(0, 12, 25) == []
    # Huge batches: every chunk within the limit, all images covered once, in order.
    n, rows = 3 * 2**16, 128 * 128  # N*PH*PW = 3 * 2**30 rows, as in the review's overflow case
    limit = kpool.max_launch_rows(16)
    chunks = kpool.batch_chunks(n, rows, limit)
    assert len(chunks) == 2 and chunks[0][0] == 0 and chunks[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
    assert all((b - a) * rows <= limit for a, b in chunks)


def test_max_launch_rows_keeps_row_index_and_grid_in_int32():
    for cout in (1, 16, 17, 192, 4096, 2**20):
        rows = kpool.max_launch_rows(cout)
        assert 1 <= rows <= 2**31 - 1 - 256  # pid_m * BLOCK_M + r < rows + BLOCK_M (<= 256)
        # Most programs: BLOCK_M = 1, BLOCK_N = 16.
        assert rows * -(-cout // 16) <= 2**31 - 1


def test_int32_offsets_ok_on_meta_shapes():
    meta = dict(device="meta", dtype=torch.float16)

    def ok(x, kernel=(3, 3), weight_numel=16 * 16 * 9, out_shape=None):
        out_shape = out_shape or (x.shape[0], 4, x.shape[2] // 2, x.shape[3] // 2)
        return kpool.int32_offsets_ok(x.shape, x.stride(), kernel, weight_numel, out_shape)

    # An image of 2**31 elements spans offsets up to 2**31 - 1: the last that fits.
    assert ok(torch.empty((4, 2, 2**15, 2**15), **meta))
    assert not ok(torch.empty((4, 3, 2**15, 2**15), **meta))
    cl = torch.empty((4, 3, 2**15, 2**15), **meta).contiguous(memory_format=torch.channels_last)
    assert not ok(cl)
    assert ok(torch.empty((2**20, 16, 64, 64), **meta))  # the batch is not limited
    # A strided view spans more than its elements.
    assert not ok(torch.empty((1, 4, 2**15, 2**15), **meta)[:, ::2])
    # Kernel taps beyond a small image are offsets too.
    tall = torch.empty((1, 1, 1, 2**31 - 1), **meta)
    assert ok(tall, kernel=(1, 1), out_shape=(1, 1, 1, 1))
    assert not ok(tall, kernel=(2, 1), out_shape=(1, 1, 1, 1))
    # The output image and the weight count too.
    x = torch.empty((2, 16, 64, 64), **meta)
    assert ok(x, out_shape=(2, 2, 2**15, 2**15))
    assert not ok(x, out_shape=(2, 2, 2**15, 2**15 + 1))
    assert ok(x, weight_numel=2**31)
    assert not ok(x, weight_numel=2**31 + 1)


def test_images_beyond_int32_offsets_take_the_torch_path(monkeypatch):
    """Past the int32 limit (lowered here), the launchers return the torch composition, in the
    kernels' output layout, without launching."""
    monkeypatch.setattr(kpool, "INT32_MAX", 100)
    monkeypatch.setattr(configs_mod, "tuned_kernel", lambda name, device=None: pytest.fail("kernel launched"))
    for layout in LAYOUTS:
        for pool in ("max", "avg"):
            _pool_case((2, 5, 6, 9, 8, 3, 3, 2, (1, 0, 2, 1)), torch.float32, pool, layout, seed=31)
            _pool_case((1, 5, 6, 9, 8, 2, 2, 1, "same"), torch.float32, pool, layout, pool_size=3, seed=32)
        _up_case((2, 4, 3, 5, 6, 2, "same", 2), torch.float32, layout, seed=33)


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_gpu_tensors_on_another_device():
    """Tensors on cuda:1 while cuda:0 is current: the kernels run there, on its stream, and the
    current device is left alone."""
    torch.cuda.set_device(0)
    with torch.cuda.device(1):
        x, weight, b = _make_inputs(2, 16, 32, 20, 18, 3, 3, torch.float16, "channels_last", seed=41)
    assert x.device == torch.device("cuda", 1)
    kwargs = dict(stride=1, pad_top=1, pad_left=1, out_h=20, out_w=18, pool="max", pool_size=2)
    out = conv_relu_pool_triton(x, weight, b, **kwargs)
    assert torch.cuda.current_device() == 0 and out.device == x.device
    _check(out, reference_conv_relu_pool(x, weight, b, **kwargs), x, weight, layout="channels_last",
           expect_shape=(2, 32, 10, 9))
    up = conv_relu_upsample_triton(x, weight, b, pad_top=1, pad_left=1, out_h=20, out_w=18, scale=2)
    assert torch.cuda.current_device() == 0
    _check(up, reference_conv_relu_upsample(x, weight, b, pad_top=1, pad_left=1, out_h=20, out_w=18, scale=2),
           x, weight, layout="channels_last", expect_shape=(2, 8, 40, 36))


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
