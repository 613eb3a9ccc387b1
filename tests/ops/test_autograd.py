"""Autograd of the fused conv ops, and tracing by torch.compile / torch.export (torch backend)."""

from __future__ import annotations

import shutil
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastcodec.ops import conv_relu_pool, conv_relu_upsample

CL = torch.channels_last


def rand(shape, dtype=torch.float64, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype)


def leaves(n, cin, h, w, cout, kh, kw, dtype=torch.float64, bias=True, layout="nchw", seed=0):
    x = rand((n, cin, h, w), dtype, seed)
    if layout == "cl":
        x = x.to(memory_format=CL)
    weight = rand((cout, cin, kh, kw), dtype, seed + 1, scale=(cin * kh * kw) ** -0.5)
    b = rand((cout,), dtype, seed + 2, scale=0.2) if bias else None
    return [t.requires_grad_() if t is not None else None for t in (x, weight, b)]


def ref_pool(x, weight, bias, stride, padding, pool, k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y = F.relu(F.conv2d(x, weight, bias, stride, padding))
    return (F.max_pool2d if pool == "max" else F.avg_pool2d)(y, k)


def ref_upsample(x, weight, bias, padding, scale):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y = F.relu(F.conv2d(x, weight, bias, 1, padding))
    return F.pixel_shuffle(y, scale)


# (n, cin, h, w, cout, kh, kw, stride, padding, pool, pool_size, bias, layout)
GRADCHECK_POOL = [
    (1, 2, 6, 5, 3, 3, 3, 1, 1, "max", 2, True, "nchw"),
    (1, 2, 6, 5, 3, 3, 3, 1, 1, "avg", 2, True, "cl"),
    (2, 2, 5, 6, 2, 2, 3, 1, "same", "max", 2, False, "nchw"),  # asymmetric padding
    (1, 2, 7, 6, 2, 2, 2, 1, "same", "avg", 3, True, "nchw"),
    (1, 2, 9, 8, 3, 3, 3, 2, 1, "max", 2, True, "cl"),  # stride 2
    (1, 2, 9, 8, 2, 3, 2, 2, 0, "avg", 2, False, "nchw"),
]

GRADCHECK_UPSAMPLE = [
    (1, 2, 4, 5, 8, 3, 3, 1, 2, True, "nchw"),
    (1, 2, 4, 3, 8, 2, 2, "same", 2, True, "cl"),
    (2, 1, 3, 4, 9, 1, 2, "same", 3, False, "nchw"),
]


@pytest.mark.parametrize("case", GRADCHECK_POOL, ids=str)
def test_gradcheck_pool(case):
    n, cin, h, w, cout, kh, kw, stride, padding, pool, k, bias, layout = case
    inputs = leaves(n, cin, h, w, cout, kh, kw, bias=bias, layout=layout, seed=11)

    def f(x, weight, b):
        return conv_relu_pool(x, weight, b, stride=stride, padding=padding, pool=pool,
                              pool_size=k, backend="torch")

    out = f(*inputs)
    assert (out > 0).any() and (out == 0).any() or pool == "avg"  # both sides of the ReLU
    assert torch.autograd.gradcheck(f, tuple(inputs))


@pytest.mark.parametrize("case", GRADCHECK_UPSAMPLE, ids=str)
def test_gradcheck_upsample(case):
    n, cin, h, w, cout, kh, kw, padding, scale, bias, layout = case
    inputs = leaves(n, cin, h, w, cout, kh, kw, bias=bias, layout=layout, seed=12)

    def f(x, weight, b):
        return conv_relu_upsample(x, weight, b, padding=padding, scale=scale, backend="torch")

    out = f(*inputs)
    assert (out > 0).any() and (out == 0).any()
    assert torch.autograd.gradcheck(f, tuple(inputs))


def test_gradgradcheck():
    """The backward is made of differentiable ATen ops, so double backward works too."""
    x, weight, b = leaves(1, 2, 4, 4, 4, 2, 2, seed=13)
    assert torch.autograd.gradgradcheck(
        lambda x, w, b: conv_relu_pool(x, w, b, padding="same", pool="max", backend="torch"),
        (x, weight, b), fast_mode=True,
    )
    assert torch.autograd.gradgradcheck(
        lambda x, w, b: conv_relu_upsample(x, w, b, padding="same", backend="torch"),
        (x, weight, b), fast_mode=True,
    )


@pytest.mark.parametrize("pool", ["max", "avg"])
@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("stride,padding,kh,kw", [(1, "same", 4, 3), (2, 2, 5, 5), (1, 0, 1, 1)])
def test_grads_match_reference_float32(pool, layout, stride, padding, kh, kw):
    x, weight, b = leaves(2, 5, 11, 10, 6, kh, kw, torch.float32, layout=layout, seed=14)
    out = conv_relu_pool(x, weight, b, stride=stride, padding=padding, pool=pool, backend="torch")
    ref = ref_pool(x, weight, b, stride, padding, pool, 2)
    g = rand(out.shape, torch.float32, seed=15)
    got = torch.autograd.grad(out, (x, weight, b), g)
    want = torch.autograd.grad(ref, (x, weight, b), g)
    torch.testing.assert_close(out, ref)
    for a, e in zip(got, want):
        assert a.shape == e.shape
        torch.testing.assert_close(a, e)
    assert got[1].abs().sum() > 0


@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("padding,kh,kw,scale", [("same", 2, 4, 2), (1, 3, 3, 2), (0, 1, 1, 3)])
def test_upsample_grads_match_reference_float32(layout, padding, kh, kw, scale):
    x, weight, b = leaves(2, 3, 6, 7, 4 * scale * scale, kh, kw, torch.float32, layout=layout,
                          seed=16)
    out = conv_relu_upsample(x, weight, b, padding=padding, scale=scale, backend="torch")
    ref = ref_upsample(x, weight, b, padding, scale)
    g = rand(out.shape, torch.float32, seed=17)
    got = torch.autograd.grad(out, (x, weight, b), g)
    want = torch.autograd.grad(ref, (x, weight, b), g)
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e)


def test_partial_requires_grad_and_empty_batch():
    x, weight, b = leaves(1, 2, 6, 6, 3, 3, 3, torch.float32, seed=18)
    x.requires_grad_(False)
    out = conv_relu_pool(x, weight, b, padding=1, backend="torch")
    (gw,) = torch.autograd.grad(out.sum(), (weight,))
    (rw,) = torch.autograd.grad(ref_pool(x, weight, b, 1, 1, "max", 2).sum(), (weight,))
    torch.testing.assert_close(gw, rw)
    x.requires_grad_(True)
    w8 = rand((8, 2, 3, 3), torch.float32, seed=19)  # no grad
    (gx,) = torch.autograd.grad(conv_relu_upsample(x, w8, None, padding=1).sum(), (x,))
    (rx,) = torch.autograd.grad(ref_upsample(x, w8, None, 1, 2).sum(), (x,))
    torch.testing.assert_close(gx, rx)
    assert gx.abs().sum() > 0
    # empty batch: zero gradients of the right shapes
    x0, w0, b0 = leaves(0, 2, 6, 6, 3, 3, 3, torch.float32)
    out = conv_relu_pool(x0, w0, b0, padding=1, backend="torch")
    gx0, gw0, gb0 = torch.autograd.grad(out.sum(), (x0, w0, b0))
    assert gx0.shape == x0.shape and gw0.shape == w0.shape and gb0.shape == b0.shape
    assert gw0.abs().sum() == 0 and gb0.abs().sum() == 0


# --------------------------------------------------------------------------------------------
# torch.compile / torch.export
# --------------------------------------------------------------------------------------------


class TinyCodec(nn.Module):
    """Analysis (conv-relu-pool x2) then synthesis (conv-relu-upsample) with the fused ops."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(21)
        self.w1 = nn.Parameter(torch.randn(6, 3, 3, 3, generator=g) * 0.3)
        self.b1 = nn.Parameter(torch.randn(6, generator=g) * 0.1)
        self.w2 = nn.Parameter(torch.randn(8, 6, 2, 2, generator=g) * 0.3)
        self.w3 = nn.Parameter(torch.randn(12, 8, 3, 3, generator=g) * 0.3)
        self.b3 = nn.Parameter(torch.randn(12, generator=g) * 0.1)

    def forward(self, x):
        y = conv_relu_pool(x, self.w1, self.b1, padding=1, pool="max")
        y = conv_relu_pool(y, self.w2, None, padding="same", pool="avg")
        return conv_relu_upsample(y, self.w3, self.b3, padding="same", scale=2)


def _input(shape=(2, 3, 12, 12), layout="nchw"):
    x = rand(shape, torch.float32, seed=22)
    return x.to(memory_format=CL) if layout == "cl" else x


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("layout", ["nchw", "cl"])
def test_torch_compile_fullgraph_forward_backward(layout):
    model = TinyCodec()
    x = _input(layout=layout)
    ref = model(x)
    ref_grads = torch.autograd.grad(ref.square().sum(), list(model.parameters()))
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    torch.testing.assert_close(out, ref)
    assert out.stride() == ref.stride()
    grads = torch.autograd.grad(out.square().sum(), list(model.parameters()))
    for a, e in zip(grads, ref_grads):
        torch.testing.assert_close(a, e)


def test_torch_compile_graph_has_the_custom_ops():
    seen = []

    def backend(gm, example_inputs):
        seen.append(gm)
        return gm.forward

    model = TinyCodec()
    torch.compile(model, fullgraph=True, backend=backend)(_input())
    assert len(seen) == 1  # one graph, no breaks
    targets = [n.target for n in seen[0].graph.nodes if n.op == "call_function"]
    assert targets.count(torch.ops.fastcodec.conv_relu_pool.default) == 2
    assert targets.count(torch.ops.fastcodec.conv_relu_upsample.default) == 1


@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="inductor on CPU needs a C++ compiler")
def test_torch_compile_inductor():
    model = TinyCodec()
    x = _input((1, 3, 8, 8))
    ref = model(x)
    out = torch.compile(model, fullgraph=True)(x)
    torch.testing.assert_close(out, ref)


def test_torch_compile_dynamic_shapes():
    model = TinyCodec()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager", dynamic=True)
    for shape in [(2, 3, 12, 12), (1, 3, 10, 14)]:
        x = _input(shape)
        torch.testing.assert_close(compiled(x), model(x))


def test_torch_compile_reports_argument_errors():
    """Validation errors keep their type and message under torch.compile (graph break, then
    the eager call raises)."""
    model = TinyCodec()

    def bad_backend(x):
        return conv_relu_pool(x, model.w1, None, backend="numpy")

    def bad_geometry(x):
        return conv_relu_pool(x, model.w1, None, pool_size=16)

    with pytest.raises(ValueError, match="unknown backend"):
        torch.compile(bad_backend, backend="eager")(_input())
    with pytest.raises(ValueError, match="pooling window"):
        torch.compile(bad_geometry, backend="eager")(_input())


def test_torch_export():
    from torch.export import Dim

    model = TinyCodec()
    x = _input()
    ep = torch.export.export(model, (x,), dynamic_shapes={"x": {0: Dim("batch", max=64)}})
    nodes = [n for n in ep.graph.nodes if n.op == "call_function"]
    ops = [n.target for n in nodes]
    assert ops.count(torch.ops.fastcodec.conv_relu_pool.default) == 2
    assert ops.count(torch.ops.fastcodec.conv_relu_upsample.default) == 1
    assert all("torch" in n.args for n in nodes)  # the backend is a constant string argument
    for shape in [(2, 3, 12, 12), (3, 3, 12, 12)]:
        x = _input(shape)
        torch.testing.assert_close(ep.module()(x), model(x))


# --------------------------------------------------------------------------------------------
# Autocast
# --------------------------------------------------------------------------------------------


def test_autocast_follows_conv2d_policy():
    """Inside torch.autocast the ops compute in the autocast dtype, like F.conv2d would, and
    float32 parameters get float32 gradients."""
    x, weight, b = leaves(2, 3, 8, 8, 8, 3, 3, torch.float32, seed=30)
    g = rand((2, 8, 4, 4), torch.float32, seed=31)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv_relu_pool(x, weight, b, padding=1, backend="torch")
        ref = ref_pool(x, weight, b, 1, 1, "max", 2)
        up = conv_relu_upsample(x, weight, b, padding=1, backend="torch")
        up_ref = ref_upsample(x, weight, b, 1, 2)
    assert out.dtype == ref.dtype == torch.bfloat16
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(up, up_ref)
    got = torch.autograd.grad(out, (x, weight, b), g.bfloat16())
    want = torch.autograd.grad(ref, (x, weight, b), g.bfloat16())
    for a, e in zip(got, want):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, e)
    # mixed dtypes coming from autocast regions are accepted inside one, rejected outside
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv_relu_pool(x.detach().bfloat16(), weight, b, padding=1).dtype == torch.bfloat16
    with pytest.raises(TypeError, match="same dtype"):
        conv_relu_pool(x.detach().bfloat16(), weight, b, padding=1)
