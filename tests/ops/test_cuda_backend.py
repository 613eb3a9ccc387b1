"""CUDA C++ backend of the fused conv ops: fastcodec._cuda and fastcodec.kernels.cuda_ops.

Three levels, so that something meaningful runs everywhere:

* build level (needs the package built with nvcc): the module exposes the kernels, validates its
  arguments and, without a driver, fails with a RuntimeError rather than crashing;
* host emulation (same build, no GPU needed): the kernels' per-element code, which is
  ``__host__ __device__``, run on the CPU against a float64 PyTorch reference over the grid of
  dtypes x pool kinds x layouts x kernel sizes x strides x paddings x pool sizes;
* GPU (skipped without CUDA): the real kernels against the same reference, poisoned outputs,
  side streams and output memory formats.
"""

from __future__ import annotations

import itertools
import types

import pytest
import torch
import torch.nn.functional as F

from fastcodec.kernels import cuda_ops

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}
# Relative to the largest reference magnitude: fp32 accumulation either way, so the error is the
# final rounding to the element type (plus fp32 summation error, far below these).
TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
LAYOUTS = ["nchw", "channels_last", "strided"]
KERNEL_SIZES = [(1, 1), (3, 3), (5, 5), (7, 7), (2, 4), (3, 1)]
POOL_KINDS = ["max", "avg"]
POOL_SIZES = [2, 1, 3]  # 2 takes the 2x2-window kernels, the others the generic ones
STRIDES = [1, 2]


def _paddings(kh: int, kw: int):
    """valid, TF-style "same" (the extra row/column at the bottom/right: pad_top = (k-1)//2), and
    a padding of k-1 on both sides ("full", the widest the kernels see)."""
    return [(0, 0), ((kh - 1) // 2, (kw - 1) // 2), (kh - 1, kw - 1)]


def _conv_out_size(size: int, k: int, stride: int, pad_before: int, mode: int) -> int:
    """Conv output size for padding `mode` 0 (valid), 1 (same: ceil(size / stride)) or 2 (full)."""
    if mode == 1:
        return -(-size // stride)
    return (size + (2 * pad_before if mode == 2 else 0) - k) // stride + 1


def _cases(kh: int, kw: int, h: int, w: int):
    """(stride, pad_top, pad_left, out_h, out_w) for every stride and padding of the grid."""
    for stride in STRIDES:
        for mode, (pt, pl) in enumerate(_paddings(kh, kw)):
            oh = _conv_out_size(h, kh, stride, pt, mode)
            ow = _conv_out_size(w, kw, stride, pl, mode)
            yield stride, pt, pl, oh, ow


# --------------------------------------------------------------------------------------------
# Reference (float64, CPU)
# --------------------------------------------------------------------------------------------


def reference_conv_relu(x, weight, bias, *, stride, pad_top, pad_left, out_h, out_w):
    x = x.detach().to("cpu", torch.float64)
    weight = weight.detach().to("cpu", torch.float64)
    bias = None if bias is None else bias.detach().to("cpu", torch.float64)
    kh, kw = weight.shape[-2:]
    h, w = x.shape[-2:]
    pad_bottom = max(0, (out_h - 1) * stride + kh - pad_top - h)
    pad_right = max(0, (out_w - 1) * stride + kw - pad_left - w)
    xp = F.pad(x, (pad_left, pad_right, pad_top, pad_bottom))
    y = F.conv2d(xp, weight, bias, stride=stride)[..., :out_h, :out_w]
    assert y.shape[-2:] == (out_h, out_w)
    return F.relu(y)


def reference_pool(x, weight, bias, *, stride, pad_top, pad_left, out_h, out_w, pool, pool_size):
    y = reference_conv_relu(x, weight, bias, stride=stride, pad_top=pad_top, pad_left=pad_left,
                            out_h=out_h, out_w=out_w)
    fn = F.max_pool2d if pool == "max" else F.avg_pool2d
    return fn(y, pool_size)


def reference_upsample(x, weight, bias, *, pad_top, pad_left, out_h, out_w, scale):
    y = reference_conv_relu(x, weight, bias, stride=1, pad_top=pad_top, pad_left=pad_left,
                            out_h=out_h, out_w=out_w)
    return F.pixel_shuffle(y, scale)


def assert_close(out, ref, dtype, what=""):
    assert tuple(out.shape) == tuple(ref.shape), what
    got = out.detach().to("cpu", torch.float64)
    assert not torch.isnan(got).any(), f"{what}: output has NaN (element not written?)"
    tol = TOLERANCE[dtype]
    scale = max(1.0, float(ref.abs().max())) if ref.numel() else 1.0
    err = float((got - ref).abs().max()) if ref.numel() else 0.0
    assert err <= tol * scale, f"{what}: max abs error {err:.3g} > {tol * scale:.3g}"


# --------------------------------------------------------------------------------------------
# Operands
# --------------------------------------------------------------------------------------------


def make_input(shape, dtype, layout, device, seed):
    """Random non-zero input in `layout`: NCHW-contiguous, channels_last, or a strided view with
    a storage offset (every other channel and column of a larger tensor full of junk)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(shape, generator=g).to(dtype)
    if layout == "nchw":
        x = base
    elif layout == "channels_last":
        x = base.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":
        n, c, h, w = shape
        big = torch.randn((n, 2 * c, h + 3, 2 * w + 1), generator=g).to(dtype)
        x = big[:, 1::2, 2 : h + 2, 1::2]
        x.copy_(base)
        assert not x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)
    else:
        raise ValueError(layout)
    if device != "cpu":
        # .to(device) keeps the strides of dense tensors only: move the whole storage instead.
        if layout == "strided":
            big_dev = big.to(device)
            x = big_dev[:, 1::2, 2 : shape[2] + 2, 1::2]
        else:
            x = x.to(device)
    return x


def make_params(cout, cin, kh, kw, dtype, device, seed, bias=True):
    g = torch.Generator().manual_seed(seed + 1)
    fan_in = cin * kh * kw
    weight = (torch.randn((cout, cin, kh, kw), generator=g) / fan_in**0.5).to(dtype).to(device)
    b = (0.3 * torch.randn((cout,), generator=g)).to(dtype).to(device) if bias else None
    return weight, b


def nan_output(shape, dtype, device, layout="nchw"):
    out = torch.full(shape, float("nan"), dtype=dtype, device=device)
    if layout == "channels_last":
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def pool_call_args(x, weight, bias, out, *, stride, pad_top, pad_left, out_h, out_w, pool,
                   pool_size):
    """Positional arguments of fastcodec._cuda.conv_relu_pool / _emulate_conv_relu_pool."""
    n, cin, h, w = x.shape
    cout, _, kh, kw = weight.shape
    return (x.data_ptr(), weight.data_ptr(), 0 if bias is None else bias.data_ptr(),
            out.data_ptr(), DTYPE_NAMES[x.dtype], n, cin, h, w, cout, kh, kw,
            list(x.stride()), list(out.stride()), stride, pad_top, pad_left, out_h, out_w,
            pool, pool_size)


def upsample_call_args(x, weight, bias, out, *, pad_top, pad_left, out_h, out_w, scale):
    n, cin, h, w = x.shape
    cout, _, kh, kw = weight.shape
    return (x.data_ptr(), weight.data_ptr(), 0 if bias is None else bias.data_ptr(),
            out.data_ptr(), DTYPE_NAMES[x.dtype], n, cin, h, w, cout, kh, kw,
            list(x.stride()), list(out.stride()), pad_top, pad_left, out_h, out_w, scale)


def _cuda_ext():
    return pytest.importorskip("fastcodec._cuda", reason="package built without CUDA")


# --------------------------------------------------------------------------------------------
# (a) build level
# --------------------------------------------------------------------------------------------


def test_module_exposes_the_fused_kernels():
    ext = _cuda_ext()
    for name in ("conv_relu_pool", "conv_relu_upsample", "runtime_info", "compiled_architectures",
                 "_emulate_conv_relu_pool", "_emulate_conv_relu_upsample"):
        assert callable(getattr(ext, name, None)), name
    assert ext.compiled_architectures()
    assert "runtime_version" in ext.runtime_info()


def test_binding_rejects_invalid_arguments_before_touching_cuda():
    """Argument errors are ValueErrors raised before any CUDA call (so also without a driver)."""
    ext = _cuda_ext()
    good = dict(x_ptr=0x1000, w_ptr=0x2000, b_ptr=0, out_ptr=0x3000, dtype="float32", n=1, cin=3,
                h=8, w=8, cout=4, kh=3, kw=3, x_strides=[192, 64, 8, 1],
                out_strides=[64, 16, 4, 1], stride=1, pad_top=1, pad_left=1, out_h=8, out_w=8,
                pool="max", pool_size=2)
    bad = [
        (dict(dtype="int8"), "dtype"),
        (dict(dtype="float64"), "dtype"),
        (dict(pool="min"), "pool"),
        (dict(pool_size=0), "pool size"),
        (dict(kh=8), "kernel"),
        (dict(kw=0), "kernel"),
        (dict(stride=3), "stride"),
        (dict(pad_top=-1), "padding"),
        (dict(out_w=-1), "output size"),
        (dict(cin=0), "input channels"),
        (dict(cout=0), "output channels"),
        (dict(x_ptr=0), "non-null"),
        (dict(out_ptr=0), "non-null"),
    ]
    for change, words in bad:
        with pytest.raises(ValueError, match=words):
            ext.conv_relu_pool(**{**good, **change})
    with pytest.raises(TypeError):
        ext.conv_relu_pool(**{**good, "x_strides": [1, 2, 3]})
    up = {k: v for k, v in good.items() if k not in ("stride", "pool", "pool_size")}
    with pytest.raises(ValueError, match="multiple of scale"):
        ext.conv_relu_upsample(**{**up, "cout": 6}, scale=2)
    with pytest.raises(ValueError, match="scale"):
        ext.conv_relu_upsample(**up, scale=0)


def test_empty_output_launches_nothing():
    """Empty outputs are a no-op that succeeds (no pointer is dereferenced, no driver needed)."""
    ext = _cuda_ext()
    args = dict(x_ptr=0, w_ptr=0, b_ptr=0, out_ptr=0, dtype="float16", n=0, cin=3, h=8, w=8,
                cout=4, kh=3, kw=3, x_strides=[192, 64, 8, 1], out_strides=[64, 16, 4, 1])
    ext.conv_relu_pool(**args, stride=1, pad_top=1, pad_left=1, out_h=8, out_w=8, pool="avg",
                       pool_size=2)
    ext.conv_relu_pool(**{**args, "n": 1, "x_ptr": 0, "out_ptr": 0}, stride=1, pad_top=1,
                       pad_left=1, out_h=1, out_w=8, pool="avg", pool_size=2)  # 0 pooled rows
    ext.conv_relu_upsample(**args, pad_top=1, pad_left=1, out_h=8, out_w=8, scale=2)


# --------------------------------------------------------------------------------------------
# (b) no driver: clean RuntimeError, no crash
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: dummy pointers would fault")
def test_launch_without_driver_raises_runtime_error():
    ext = _cuda_ext()
    common = dict(x_ptr=0x1000, w_ptr=0x2000, b_ptr=0x4000, out_ptr=0x3000, n=2, cin=3, h=8, w=8,
                  kh=3, kw=3, x_strides=[192, 64, 8, 1], pad_top=1, pad_left=1, out_h=8, out_w=8)
    for dtype in DTYPE_NAMES.values():
        for device in (-1, 0):
            with pytest.raises(RuntimeError) as info:
                ext.conv_relu_pool(**common, dtype=dtype, cout=4, out_strides=[64, 16, 4, 1],
                                   stride=1, pool="max", pool_size=2, stream=0, device=device)
            msg = str(info.value)
            assert "conv_relu_pool" in msg and "cuda" in msg.lower(), msg
            with pytest.raises(RuntimeError, match="conv_relu_upsample"):
                ext.conv_relu_upsample(**common, dtype=dtype, cout=8,
                                       out_strides=[512, 256, 16, 1], scale=2, stream=0,
                                       device=device)
    # The module is still usable afterwards.
    assert ext.runtime_info()["device_count"] == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available")
def test_python_launchers_without_cuda():
    assert cuda_ops.is_available() is False
    x = torch.randn(1, 3, 8, 8)
    w = torch.randn(4, 3, 3, 3)
    with pytest.raises(RuntimeError, match="CUDA|fastcodec._cuda"):
        cuda_ops.conv_relu_pool_cuda(x, w, None, stride=1, pad_top=1, pad_left=1, out_h=8,
                                     out_w=8, pool="max", pool_size=2)
    with pytest.raises(RuntimeError, match="CUDA|fastcodec._cuda"):
        cuda_ops.conv_relu_upsample_cuda(x, torch.randn(8, 3, 3, 3), None, pad_top=1,
                                         pad_left=1, out_h=8, out_w=8, scale=2)


def _fake_devices(monkeypatch, capabilities, archs=(80, 90)):
    """torch sees CUDA devices with these capabilities (index -> (major, minor); None is the
    current device, 0); the extension was built for ``archs``."""
    fake = types.SimpleNamespace(conv_relu_pool=object(), compiled_architectures=lambda: list(archs))
    monkeypatch.setattr(cuda_ops, "_load_extension", lambda required: fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    def capability(device=None):
        device = torch.device("cuda", 0) if device is None else torch.device(device)
        if device.type != "cuda":
            raise ValueError(f"Expected a cuda device, but got: {device}")
        return capabilities[device.index]

    monkeypatch.setattr(torch.cuda, "get_device_capability", capability)


def test_availability_follows_the_tensors_device(monkeypatch):
    """is_available(device) and the launchers' check ask the tensors' device, not the current one:
    an sm_75 cuda:1 next to an sm_80 cuda:0 cannot run a build for sm_80/sm_90."""
    from fastcodec.ops import _backend

    _fake_devices(monkeypatch, {0: (8, 0), 1: (7, 5)})
    assert cuda_ops.is_available() is True  # the current device, cuda:0
    assert cuda_ops.is_available(torch.device("cuda", 0)) is True
    assert cuda_ops.is_available(torch.device("cuda", 1)) is False
    assert cuda_ops.is_available("cuda:1") is False
    assert cuda_ops.is_available(torch.device("cpu")) is False
    cuda_ops._extension(torch.device("cuda", 0))
    with pytest.raises(RuntimeError, match=r"cuda:1 \(sm_75\)"):
        cuda_ops._extension(torch.device("cuda", 1))
    # The backend choice too.
    monkeypatch.delenv(_backend.ENV_VAR, raising=False)
    assert _backend.resolve_backend("cuda", torch.device("cuda", 0), "op") == "cuda"
    with pytest.raises(RuntimeError, match="is not available"):
        _backend.resolve_backend("cuda", torch.device("cuda", 1), "op")
    monkeypatch.setattr(_backend, "CUDA_BACKEND_IS_DEFAULT", True)
    monkeypatch.setattr(_backend, "triton_available", lambda: True)
    assert _backend.resolve_backend(None, torch.device("cuda", 0), "op") == "cuda"
    assert _backend.resolve_backend(None, torch.device("cuda", 1), "op") == "triton"


def test_output_memory_format_rule_matches_torch():
    """cuda_ops' port of suggest_memory_format == channels_last agrees with torch's."""
    prims = pytest.importorskip("torch._prims_common")
    for shape in [(2, 3, 4, 5), (2, 1, 4, 5), (1, 3, 1, 1), (2, 3, 1, 5), (1, 1, 1, 1)]:
        base = torch.empty(shape)
        for perm in itertools.permutations(range(4)):
            t = base.permute(perm).contiguous().permute([perm.index(i) for i in range(4)])
            views = [t, t[..., ::2]] if shape[3] > 1 else [t]
            for v in views:
                expected = prims.suggest_memory_format(v) == torch.channels_last
                assert cuda_ops._channels_last_strides(v) == expected, (shape, perm, v.stride())


# --------------------------------------------------------------------------------------------
# Host emulation of the kernel code (no GPU needed)
# --------------------------------------------------------------------------------------------

N, CIN, COUT, H, W = 2, 3, 5, 11, 13


@pytest.mark.parametrize("ksize", KERNEL_SIZES, ids=lambda k: f"{k[0]}x{k[1]}")
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("pool", POOL_KINDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: DTYPE_NAMES[d])
def test_emulated_pool_matches_reference(dtype, pool, layout, ksize):
    ext = _cuda_ext()
    kh, kw = ksize
    x = make_input((N, CIN, H, W), dtype, layout, "cpu", seed=kh * 10 + kw)
    weight, bias = make_params(COUT, CIN, kh, kw, dtype, "cpu", seed=kh * 10 + kw)
    out_layout = "channels_last" if layout == "channels_last" else "nchw"
    for stride, pt, pl, oh, ow in _cases(kh, kw, H, W):
        for pool_size in POOL_SIZES:
            geo = dict(stride=stride, pad_top=pt, pad_left=pl, out_h=oh, out_w=ow, pool=pool,
                       pool_size=pool_size)
            out = nan_output((N, COUT, oh // pool_size, ow // pool_size), dtype, "cpu", out_layout)
            ext._emulate_conv_relu_pool(*pool_call_args(x, weight, bias, out, **geo))
            assert_close(out, reference_pool(x, weight, bias, **geo), dtype, str(geo))


@pytest.mark.parametrize("ksize", KERNEL_SIZES, ids=lambda k: f"{k[0]}x{k[1]}")
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("scale", [2, 1, 3])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: DTYPE_NAMES[d])
def test_emulated_upsample_matches_reference(dtype, scale, layout, ksize):
    ext = _cuda_ext()
    kh, kw = ksize
    c = 2
    x = make_input((N, CIN, H - 4, W - 4), dtype, layout, "cpu", seed=kh + kw)
    weight, bias = make_params(c * scale * scale, CIN, kh, kw, dtype, "cpu", seed=kh + kw)
    out_layout = "channels_last" if layout == "channels_last" else "nchw"
    for stride, pt, pl, oh, ow in _cases(kh, kw, H - 4, W - 4):
        if stride != 1:
            continue
        geo = dict(pad_top=pt, pad_left=pl, out_h=oh, out_w=ow, scale=scale)
        out = nan_output((N, c, oh * scale, ow * scale), dtype, "cpu", out_layout)
        ext._emulate_conv_relu_upsample(*upsample_call_args(x, weight, bias, out, **geo))
        assert_close(out, reference_upsample(x, weight, bias, **geo), dtype, str(geo))


def test_emulated_strided_output_writes_only_its_view():
    """Output strides are honoured: a view into a larger NaN buffer is fully written and nothing
    outside it is touched."""
    ext = _cuda_ext()
    x = make_input((N, CIN, H, W), torch.float32, "nchw", "cpu", seed=3)
    weight, bias = make_params(COUT, CIN, 3, 3, torch.float32, "cpu", seed=3)
    geo = dict(stride=1, pad_top=1, pad_left=1, out_h=H, out_w=W, pool="max", pool_size=2)
    big = torch.full((N, 2 * COUT, H // 2 + 2, 3 * (W // 2)), float("nan"))
    out = big[:, ::2, 1 : H // 2 + 1, ::3]
    ext._emulate_conv_relu_pool(*pool_call_args(x, weight, bias, out, **geo))
    assert_close(out, reference_pool(x, weight, bias, **geo), torch.float32)
    mask = torch.ones_like(big, dtype=torch.bool)
    mask[:, ::2, 1 : H // 2 + 1, ::3] = False
    assert torch.isnan(big[mask]).all()


def test_emulated_without_bias_and_nan_propagation():
    ext = _cuda_ext()
    x = make_input((1, CIN, 6, 6), torch.float32, "nchw", "cpu", seed=5)
    weight, _ = make_params(COUT, CIN, 3, 3, torch.float32, "cpu", seed=5)
    geo = dict(stride=1, pad_top=1, pad_left=1, out_h=6, out_w=6, pool_size=2)
    for pool in POOL_KINDS:
        out = nan_output((1, COUT, 3, 3), torch.float32, "cpu")
        ext._emulate_conv_relu_pool(*pool_call_args(x, weight, None, out, pool=pool, **geo))
        assert_close(out, reference_pool(x, weight, None, pool=pool, **geo), torch.float32)
    # A NaN input propagates through ReLU and both pools, as in PyTorch.
    x[0, 0, 0, 0] = float("nan")
    for pool in POOL_KINDS:
        out = torch.zeros((1, COUT, 3, 3))
        ext._emulate_conv_relu_pool(*pool_call_args(x, weight, None, out, pool=pool, **geo))
        ref = reference_pool(x, weight, None, pool=pool, **geo)
        assert torch.equal(torch.isnan(out), torch.isnan(ref))


# --------------------------------------------------------------------------------------------
# (c) GPU
# --------------------------------------------------------------------------------------------

gpu = pytest.mark.skipif(not cuda_ops.is_available(),
                         reason="needs a CUDA device and fastcodec._cuda built with the kernels")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("ksize", KERNEL_SIZES, ids=lambda k: f"{k[0]}x{k[1]}")
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("pool", POOL_KINDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: DTYPE_NAMES[d])
def test_gpu_pool_matches_reference(dtype, pool, layout, ksize):
    kh, kw = ksize
    n, cin, cout, h, w = 2, 6, 7, 19, 23
    x = make_input((n, cin, h, w), dtype, layout, "cuda", seed=kh * 10 + kw)
    weight, bias = make_params(cout, cin, kh, kw, dtype, "cuda", seed=kh * 10 + kw)
    for stride, pt, pl, oh, ow in _cases(kh, kw, h, w):
        for pool_size in POOL_SIZES:
            geo = dict(stride=stride, pad_top=pt, pad_left=pl, out_h=oh, out_w=ow, pool=pool,
                       pool_size=pool_size)
            out = cuda_ops.conv_relu_pool_cuda(x, weight, bias, **geo)
            torch.cuda.synchronize()
            assert out.device == x.device and out.dtype == dtype
            assert_close(out, reference_pool(x, weight, bias, **geo), dtype, str(geo))
            # Same memory format as the PyTorch ops would return.
            conv = F.conv2d(x, weight, bias, stride=stride)
            fmt = (torch.channels_last if cuda_ops._channels_last_strides(conv)
                   else torch.contiguous_format)
            assert out.is_contiguous(memory_format=fmt), (out.stride(), conv.stride())


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("ksize", KERNEL_SIZES, ids=lambda k: f"{k[0]}x{k[1]}")
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("scale", [2, 1, 3])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: DTYPE_NAMES[d])
def test_gpu_upsample_matches_reference(dtype, scale, layout, ksize):
    kh, kw = ksize
    n, cin, c, h, w = 2, 6, 3, 9, 14
    x = make_input((n, cin, h, w), dtype, layout, "cuda", seed=kh + kw)
    weight, bias = make_params(c * scale * scale, cin, kh, kw, dtype, "cuda", seed=kh + kw)
    for stride, pt, pl, oh, ow in _cases(kh, kw, h, w):
        if stride != 1:
            continue
        geo = dict(pad_top=pt, pad_left=pl, out_h=oh, out_w=ow, scale=scale)
        out = cuda_ops.conv_relu_upsample_cuda(x, weight, bias, **geo)
        torch.cuda.synchronize()
        assert_close(out, reference_upsample(x, weight, bias, **geo), dtype, str(geo))


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: DTYPE_NAMES[d])
@pytest.mark.parametrize("out_layout", ["nchw", "channels_last", "view"])
def test_gpu_poisoned_outputs_are_fully_overwritten(dtype, out_layout):
    """The binding called directly on NaN-filled outputs (including a strided view into a larger
    NaN buffer): every output element is written, nothing outside the view is."""
    ext = _cuda_ext()
    n, cin, cout, h, w = 3, 5, 6, 17, 20
    x = make_input((n, cin, h, w), dtype, "nchw", "cuda", seed=11)
    weight, bias = make_params(cout, cin, 3, 3, dtype, "cuda", seed=11)
    stream = torch.cuda.current_stream().cuda_stream
    device = x.device.index

    for pool in POOL_KINDS:
        geo = dict(stride=2, pad_top=0, pad_left=0, out_h=(h + 1) // 2, out_w=(w + 1) // 2,
                   pool=pool, pool_size=2)
        shape = (n, cout, geo["out_h"] // 2, geo["out_w"] // 2)
        if out_layout == "view":
            big = torch.full((n, 2 * cout, shape[2] + 1, 2 * shape[3]), float("nan"),
                             dtype=dtype, device="cuda")
            out = big[:, 1::2, 1:, ::2]
        else:
            out = nan_output(shape, dtype, "cuda", out_layout)
        ext.conv_relu_pool(*pool_call_args(x, weight, bias, out, **geo), stream, device)
        torch.cuda.synchronize()
        assert_close(out, reference_pool(x, weight, bias, **geo), dtype, pool)
        if out_layout == "view":
            mask = torch.ones_like(big, dtype=torch.bool)
            mask[:, 1::2, 1:, ::2] = False
            assert torch.isnan(big[mask]).all()

    geo = dict(pad_top=1, pad_left=1, out_h=h, out_w=w, scale=2)
    up_w, up_b = make_params(4 * 2, cin, 3, 3, dtype, "cuda", seed=12)
    out = nan_output((n, 2, 2 * h, 2 * w), dtype, "cuda",
                     "channels_last" if out_layout == "channels_last" else "nchw")
    ext.conv_relu_upsample(*upsample_call_args(x, up_w, up_b, out, **geo), stream, device)
    torch.cuda.synchronize()
    assert_close(out, reference_upsample(x, up_w, up_b, **geo), dtype, "upsample")


@pytest.mark.gpu
@gpu
def test_gpu_side_stream_and_no_bias():
    x = make_input((2, 4, 16, 16), torch.float16, "channels_last", "cuda", seed=21)
    weight, _ = make_params(8, 4, 5, 5, torch.float16, "cuda", seed=21)
    geo = dict(stride=1, pad_top=2, pad_left=2, out_h=16, out_w=16, pool="avg", pool_size=2)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        out = cuda_ops.conv_relu_pool_cuda(x, weight, None, **geo)
    side.synchronize()
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert_close(out, reference_pool(x, weight, None, **geo), torch.float16)


@pytest.mark.gpu
@gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_gpu_tensors_on_another_device_keep_the_current_device():
    """The extension makes x's device current for the launch and restores the caller's after."""
    torch.cuda.set_device(0)
    x = make_input((2, 4, 12, 10), torch.float16, "channels_last", "cuda:1", seed=23)
    weight, bias = make_params(8, 4, 3, 3, torch.float16, "cuda:1", seed=23)
    geo = dict(stride=1, pad_top=1, pad_left=1, out_h=12, out_w=10, pool="max", pool_size=2)
    out = cuda_ops.conv_relu_pool_cuda(x, weight, bias, **geo)
    assert torch.cuda.current_device() == 0 and out.device == x.device
    assert_close(out, reference_pool(x, weight, bias, **geo), torch.float16)
    up = cuda_ops.conv_relu_upsample_cuda(x, weight, bias, pad_top=1, pad_left=1, out_h=12,
                                          out_w=10, scale=2)
    assert torch.cuda.current_device() == 0
    assert_close(up, reference_upsample(x, weight, bias, pad_top=1, pad_left=1, out_h=12,
                                        out_w=10, scale=2), torch.float16)


@pytest.mark.gpu
@gpu
def test_gpu_empty_and_invalid():
    x = torch.randn(0, 3, 8, 8, device="cuda")
    w = torch.randn(4, 3, 3, 3, device="cuda")
    out = cuda_ops.conv_relu_pool_cuda(x, w, None, stride=1, pad_top=1, pad_left=1, out_h=8,
                                       out_w=8, pool="max", pool_size=2)
    assert out.shape == (0, 4, 4, 4)
    x = torch.randn(1, 3, 8, 8, device="cuda")
    with pytest.raises(ValueError, match="kernel size"):
        cuda_ops.conv_relu_pool_cuda(x, torch.randn(4, 3, 9, 9, device="cuda"), None, stride=1,
                                     pad_top=4, pad_left=4, out_h=8, out_w=8, pool="max",
                                     pool_size=2)
    with pytest.raises(ValueError, match="dtype"):
        cuda_ops.conv_relu_pool_cuda(x.double(), w.double(), None, stride=1, pad_top=1,
                                     pad_left=1, out_h=8, out_w=8, pool="max", pool_size=2)
    with pytest.raises(ValueError, match="CUDA tensor"):
        cuda_ops.conv_relu_pool_cuda(x.cpu(), w.cpu(), None, stride=1, pad_top=1, pad_left=1,
                                     out_h=8, out_w=8, pool="max", pool_size=2)
