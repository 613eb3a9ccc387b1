"""The fused modules (ConvReLUPool2d, ConvReLUUpsample2d) and fuse()."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from fastcodec.nn import ConvReLUPool2d, ConvReLUUpsample2d, fuse
from fastcodec.ops import _backend

CL = torch.channels_last


def rand(shape, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=dtype)


def fused_modules(model):
    return [m for m in model.modules() if isinstance(m, (ConvReLUPool2d, ConvReLUUpsample2d))]


def triton_usable() -> bool:
    return _backend.triton_available() and (
        torch.cuda.is_available() or _backend.triton_interpreter_enabled()
    )


needs_triton = pytest.mark.skipif(not triton_usable(), reason="no Triton kernels / interpreter")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


# --------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pool", ["max", "avg"])
@pytest.mark.parametrize(
    "kernel_size,stride,padding,bias",
    [(3, 1, 1, True), ((2, 4), 1, "same", False), (5, 2, (2, 1), True), (1, 1, "valid", True)],
)
def test_pool_module_matches_unfused(kernel_size, stride, padding, bias, pool):
    torch.manual_seed(0)
    m = ConvReLUPool2d(3, 5, kernel_size, stride, padding, bias, pool=pool, pool_size=2)
    conv = nn.Conv2d(3, 5, kernel_size, stride, padding, bias=bias)
    conv.load_state_dict(m.state_dict())
    ref = nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2))
    for layout in ("nchw", "cl"):
        x = rand((2, 3, 11, 10), seed=1)
        if layout == "cl":
            x = x.to(memory_format=CL)
        out = m(x)
        torch.testing.assert_close(out, ref(x))
        assert out.is_contiguous(memory_format=CL if layout == "cl" else torch.contiguous_format)


def test_upsample_module_matches_unfused():
    torch.manual_seed(0)
    m = ConvReLUUpsample2d(4, 3, 3, padding=1, scale=2)
    assert m.weight.shape == (12, 4, 3, 3) and m.bias.shape == (12,)
    conv = nn.Conv2d(4, 12, 3, padding=1)
    conv.load_state_dict(m.state_dict())
    ref = nn.Sequential(conv, nn.ReLU(), nn.PixelShuffle(2))
    x = rand((2, 4, 5, 6), seed=2)
    out = m(x)
    assert out.shape == (2, 3, 10, 12)
    torch.testing.assert_close(out, ref(x))
    m3 = ConvReLUUpsample2d(4, 2, (2, 3), padding="same", bias=False, scale=3)
    assert m3.weight.shape == (18, 4, 2, 3) and m3.bias is None
    ref3 = nn.Sequential(nn.Conv2d(4, 18, (2, 3), padding="same", bias=False), nn.ReLU(),
                         nn.PixelShuffle(3))
    ref3[0].load_state_dict(m3.state_dict())
    torch.testing.assert_close(m3(x), ref3(x))


def test_default_init_is_conv2d_init():
    torch.manual_seed(123)
    conv = nn.Conv2d(6, 8, 3)
    torch.manual_seed(123)
    m = ConvReLUPool2d(6, 8, 3)
    torch.testing.assert_close(m.weight, conv.weight, rtol=0, atol=0)
    torch.testing.assert_close(m.bias, conv.bias, rtol=0, atol=0)
    torch.manual_seed(7)
    conv = nn.Conv2d(6, 8 * 4, (3, 2))
    torch.manual_seed(7)
    up = ConvReLUUpsample2d(6, 8, (3, 2), scale=2)
    torch.testing.assert_close(up.weight, conv.weight, rtol=0, atol=0)
    torch.testing.assert_close(up.bias, conv.bias, rtol=0, atol=0)
    # reset_parameters redraws from the same distribution
    before = m.weight.detach().clone()
    m.reset_parameters()
    assert not torch.equal(before, m.weight)
    bound = 1 / (6 * 9) ** 0.5
    assert m.weight.abs().max() <= bound and m.bias.abs().max() <= bound


def test_state_dict_compatible_with_conv2d():
    conv = nn.Conv2d(3, 4, 3, padding=1)
    m = ConvReLUPool2d(3, 4, 3, padding=1)
    assert list(m.state_dict()) == ["weight", "bias"]
    m.load_state_dict(conv.state_dict())  # strict
    assert torch.equal(m.weight, conv.weight)
    conv2 = nn.Conv2d(3, 4, 3, padding=1)
    conv2.load_state_dict(m.state_dict())
    nb = ConvReLUPool2d(3, 4, 3, bias=False)
    assert list(nb.state_dict()) == ["weight"]
    nb.load_state_dict(nn.Conv2d(3, 4, 3, bias=False).state_dict())
    up = ConvReLUUpsample2d(3, 2, 3)
    up.load_state_dict(nn.Conv2d(3, 8, 3).state_dict())
    with pytest.raises(RuntimeError):
        up.load_state_dict(nn.Conv2d(3, 4, 3).state_dict())


def test_module_options_and_repr():
    m = ConvReLUPool2d(3, 4, (3, 5), stride=(2, 2), padding=(1, 2), pool="avg", pool_size=3,
                       dtype=torch.float64)
    assert m.weight.dtype == torch.float64
    assert (m.kernel_size, m.stride, m.padding, m.pool, m.pool_size) == ((3, 5), 2, (1, 2), "avg", 3)
    r = repr(m)
    assert "ConvReLUPool2d(3, 4, kernel_size=(3, 5), stride=2, padding=(1, 2)" in r
    assert "pool='avg'" in r and "pool_size=3" in r and "bias" not in r
    r = repr(ConvReLUUpsample2d(3, 2, 3, padding="same", bias=False, scale=2, backend="torch"))
    assert r == ("ConvReLUUpsample2d(3, 2, kernel_size=(3, 3), padding='same', bias=False, "
                 "scale=2, backend='torch')")
    x = rand((1, 3, 9, 9), dtype=torch.float64)
    assert m(x).dtype == torch.float64


@pytest.mark.parametrize(
    "make,exc,match",
    [
        (lambda: ConvReLUPool2d(3, 4, 9), ValueError, "kernel size"),
        (lambda: ConvReLUPool2d(3, 4, 3, stride=3), ValueError, "stride"),
        (lambda: ConvReLUPool2d(3, 4, 3, stride=2, padding="same"), ValueError, "stride 1"),
        (lambda: ConvReLUPool2d(3, 4, 3, padding=-1), ValueError, "non-negative"),
        (lambda: ConvReLUPool2d(3, 4, 3, pool="lp"), ValueError, "pool"),
        (lambda: ConvReLUPool2d(3, 4, 3, pool_size=0), ValueError, "pool_size"),
        (lambda: ConvReLUPool2d(0, 4, 3), ValueError, "in_channels"),
        (lambda: ConvReLUPool2d(3, 0, 3), ValueError, "out_channels"),
        (lambda: ConvReLUUpsample2d(3, 4, 3, scale=0), ValueError, "scale"),
        (lambda: ConvReLUUpsample2d(3, 4, 8), ValueError, "kernel size"),
        (lambda: ConvReLUPool2d(3, 4, 3, backend="foo"), ValueError, "unknown backend 'foo'"),
        (lambda: ConvReLUUpsample2d(3, 4, 3, backend="Triton"), ValueError, "unknown backend"),
        (lambda: ConvReLUPool2d(3, 4, 3, backend=1), TypeError, "backend"),
    ],
)
def test_module_constructor_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_from_modules_shares_parameters():
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    m = ConvReLUPool2d.from_modules(conv, nn.ReLU(), nn.AvgPool2d(2))
    assert m.weight is conv.weight and m.bias is conv.bias
    assert (m.stride, m.padding, m.pool, m.pool_size) == (2, (1, 1), "avg", 2)
    x = rand((1, 3, 12, 12))
    torch.testing.assert_close(m(x), F.avg_pool2d(F.relu(conv(x)), 2))
    conv = nn.Conv2d(3, 8, 2, padding="same", bias=False)
    u = ConvReLUUpsample2d.from_modules(conv, nn.ReLU(inplace=True), nn.PixelShuffle(2))
    assert u.bias is None and u.padding == "same" and u.out_channels == 2
    torch.testing.assert_close(u(x), F.pixel_shuffle(F.relu(conv(x)), 2))
    m = ConvReLUPool2d.from_modules(nn.Conv2d(3, 4, 3, padding="valid"), nn.ReLU(),
                                    nn.MaxPool2d(3, stride=3))
    assert m.padding == (0, 0) and m.pool_size == 3 and m.pool == "max"


def test_fused_modules_trace_with_fx():
    model = _seeded(lambda: nn.Sequential(
        ConvReLUPool2d(3, 8, 3, padding=1, pool="avg"),
        ConvReLUUpsample2d(8, 2, 3, padding="same", bias=False, backend="torch"),
    ))
    gm = fx.symbolic_trace(model)
    calls = [n.target.__name__ for n in gm.graph.nodes if n.op == "call_function"]
    assert calls == ["conv_relu_pool", "conv_relu_upsample"]
    x = rand((1, 3, 8, 6), seed=24)
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x))
        torch.testing.assert_close(fuse(gm)(x), model(x))
    assert list(gm.state_dict()) == list(model.state_dict())


@pytest.mark.parametrize(
    "conv,pool,match",
    [
        (nn.Conv2d(4, 4, 3, groups=2), nn.MaxPool2d(2), "groups"),
        (nn.Conv2d(4, 4, 3, dilation=2), nn.MaxPool2d(2), "dilation"),
        (nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), nn.MaxPool2d(2), "padding_mode"),
        (nn.Conv2d(4, 4, 9), nn.MaxPool2d(2), "kernel size"),
        (nn.Conv2d(4, 4, 3, stride=3), nn.MaxPool2d(2), "stride"),
        (nn.Conv2d(4, 4, 3, stride=(1, 2)), nn.MaxPool2d(2), "stride"),
        (nn.Conv2d(4, 4, 3), nn.MaxPool2d(3, stride=2), "stride"),
        (nn.Conv2d(4, 4, 3), nn.MaxPool2d(2, padding=1), "padding"),
        (nn.Conv2d(4, 4, 3), nn.MaxPool2d(2, dilation=2), "dilation"),
        (nn.Conv2d(4, 4, 3), nn.MaxPool2d(2, ceil_mode=True), "ceil_mode"),
        (nn.Conv2d(4, 4, 3), nn.MaxPool2d(2, return_indices=True), "return_indices"),
        (nn.Conv2d(4, 4, 3), nn.MaxPool2d((2, 3)), "square"),
        (nn.Conv2d(4, 4, 3), nn.AvgPool2d(2, ceil_mode=True), "ceil_mode"),
        (nn.Conv2d(4, 4, 3), nn.AvgPool2d(2, padding=1), "padding"),
        (nn.Conv2d(4, 4, 3), nn.AvgPool2d(2, divisor_override=3), "divisor_override"),
        (nn.Conv2d(4, 4, 3), nn.AdaptiveAvgPool2d(2), "MaxPool2d or nn.AvgPool2d"),
        (nn.Conv1d(4, 4, 3), nn.MaxPool2d(2), "Conv2d"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_from_modules_rejects(conv, pool, match):
    with pytest.raises(ValueError, match=match):
        ConvReLUPool2d.from_modules(conv, nn.ReLU(), pool)


def test_from_modules_rejects_other():
    conv = nn.Conv2d(4, 8, 3)
    with pytest.raises(ValueError, match="nn.ReLU"):
        ConvReLUPool2d.from_modules(conv, nn.ReLU6(), nn.MaxPool2d(2))
    with pytest.raises(ValueError, match="stride 1"):
        ConvReLUUpsample2d.from_modules(nn.Conv2d(4, 8, 3, stride=2), nn.ReLU(), nn.PixelShuffle(2))
    with pytest.raises(ValueError, match="divisible"):
        ConvReLUUpsample2d.from_modules(nn.Conv2d(4, 6, 3), nn.ReLU(), nn.PixelShuffle(2))
    with pytest.raises(ValueError, match="PixelShuffle"):
        ConvReLUUpsample2d.from_modules(conv, nn.ReLU(), nn.Upsample(scale_factor=2))
    hooked = nn.Conv2d(4, 8, 3)
    hooked.register_forward_hook(lambda *a: None)
    with pytest.raises(ValueError, match="hooks"):
        ConvReLUPool2d.from_modules(hooked, nn.ReLU(), nn.MaxPool2d(2))
    wn = torch.nn.utils.parametrizations.weight_norm(nn.Conv2d(4, 8, 3))
    with pytest.raises(ValueError, match="parametriz"):
        ConvReLUPool2d.from_modules(wn, nn.ReLU(), nn.MaxPool2d(2))


class StdConv2d(nn.Conv2d):
    """Weight-standardised conv: customises ``_conv_forward``, not ``forward``."""

    def _conv_forward(self, x, weight, bias):
        w = weight - weight.mean(dim=(1, 2, 3), keepdim=True)
        return super()._conv_forward(x, w / (w.std(dim=(1, 2, 3), keepdim=True) + 1e-5), bias)


class UntraceableStd(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(StdConv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))

    def forward(self, x):
        return self.body(x) if x.sum() > 0 else x  # data-dependent: fx cannot trace it


def test_conv_forward_override_blocks_fusion():
    with pytest.raises(ValueError, match="_conv_forward"):
        ConvReLUPool2d.from_modules(StdConv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2))
    with pytest.raises(ValueError, match="_conv_forward"):
        ConvReLUUpsample2d.from_modules(StdConv2d(3, 8, 3), nn.ReLU(), nn.PixelShuffle(2))
    x = rand((1, 3, 8, 8), seed=22).abs()
    for factory in (UntraceableStd, lambda: UntraceableStd().body):  # Sequential pass; fx
        model = _seeded(factory)
        fused = fuse(model)
        assert not fused_modules(fused)
        with torch.no_grad():
            torch.testing.assert_close(fused(x), model(x))


@pytest.mark.parametrize("kind", ["full_backward", "full_backward_pre"])
@pytest.mark.parametrize("idx", [0, 1, 2], ids=["conv", "relu", "pool"])
def test_backward_hooks_block_fusion(idx, kind):
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    calls = []
    getattr(model[idx], f"register_{kind}_hook")(lambda *args: calls.append(idx))
    with pytest.raises(ValueError, match="hooks"):
        ConvReLUPool2d.from_modules(*model)
    fused = fuse(model)
    assert not fused_modules(fused)
    fused(rand((1, 3, 8, 8), seed=21).requires_grad_()).sum().backward()
    assert calls == [idx]  # the hook of the copy still runs
    shuffle = nn.PixelShuffle(2)
    getattr(shuffle, f"register_{kind}_hook")(lambda *args: None)
    with pytest.raises(ValueError, match="hooks"):
        ConvReLUUpsample2d.from_modules(nn.Conv2d(3, 8, 3), nn.ReLU(), shuffle)


# --------------------------------------------------------------------------------------------
# fuse(): example models
# --------------------------------------------------------------------------------------------


class MnistNet(nn.Module):
    """The classic small MNIST CNN, written with functional forms in forward."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 5, padding=2)
        self.conv2 = nn.Conv2d(8, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(torch.relu(self.conv2(x)), kernel_size=2, stride=2)
        x = torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))


def vgg_style():
    def block(cin, cout, n, pool):
        layers = []
        for i in range(n):
            layers.append(nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1))
            layers.append(nn.ReLU(inplace=True))
        layers.append(pool)
        return layers

    return nn.Sequential(
        nn.Sequential(*block(3, 8, 1, nn.MaxPool2d(2, 2))),
        nn.Sequential(*block(8, 16, 2, nn.MaxPool2d(kernel_size=2, stride=2))),
        nn.Sequential(*block(16, 16, 1, nn.AvgPool2d(2))),
        nn.Flatten(),
        nn.Linear(16 * 2 * 2, 10),
    )


def _seeded(factory, seed=0):
    torch.manual_seed(seed)
    return factory().eval()


def test_fuse_mnist_functional():
    model = _seeded(MnistNet)
    x = rand((3, 1, 28, 28), seed=3)
    fused = fuse(model)
    assert isinstance(fused, fx.GraphModule)
    assert len(fused_modules(fused)) == 2
    assert not any(isinstance(m, nn.Conv2d) for m in fused.modules())
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x))
    # the fused modules took the convs' places: the original state_dict loads as is
    assert list(fused.state_dict()) == list(model.state_dict())
    fused.load_state_dict(model.state_dict())
    # the original is untouched (inplace=False)
    assert isinstance(model.conv1, nn.Conv2d) and not fused_modules(model)


def test_fuse_vgg_sequential():
    model = _seeded(vgg_style)
    x = rand((2, 3, 16, 16), seed=4)
    fused = fuse(model)
    assert type(fused) is nn.Sequential  # the Sequential pass keeps the model's classes
    assert len(fused_modules(fused)) == 3  # the last conv of each block
    assert sum(isinstance(m, nn.Conv2d) for m in fused.modules()) == 1  # block 2's first conv
    assert isinstance(fused[1][2], ConvReLUPool2d) and isinstance(fused[1][0], nn.Conv2d)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x))
    fused.load_state_dict(model.state_dict())  # indices kept (Identity placeholders)
    assert not fused_modules(model)


def test_fuse_vgg_training_gradients_match():
    model = _seeded(vgg_style).train()
    fused = fuse(model)
    x = rand((2, 3, 16, 16), seed=5)
    g_ref = torch.autograd.grad(model(x).square().sum(), list(model.parameters()))
    g = torch.autograd.grad(fused(x).square().sum(), list(fused.parameters()))
    assert len(g) == len(g_ref)
    for a, e in zip(g, g_ref):
        torch.testing.assert_close(a, e)


def test_fuse_inplace():
    model = _seeded(vgg_style)
    x = rand((1, 3, 16, 16), seed=6)
    with torch.no_grad():
        ref = model(x)
    out = fuse(model, inplace=True)
    assert out is model and len(fused_modules(model)) == 3
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref)
    model2 = _seeded(MnistNet)
    gm = fuse(model2, inplace=True)
    assert gm.conv1.weight is model2.conv1.weight  # no copy of the parameters


def test_fuse_is_idempotent_and_keeps_already_fused():
    fused = fuse(_seeded(vgg_style))
    again = fuse(fused)
    assert len(fused_modules(again)) == 3
    x = rand((1, 3, 16, 16), seed=7)
    with torch.no_grad():
        torch.testing.assert_close(again(x), fused(x))
    m = ConvReLUPool2d(3, 4, 3)
    assert isinstance(fuse(m), ConvReLUPool2d)


# --------------------------------------------------------------------------------------------
# fuse(): fx patterns
# --------------------------------------------------------------------------------------------


RELUS = {
    "module": lambda self, y: self.relu(y),
    "module_inplace": lambda self, y: self.relu_inplace(y),
    "F.relu": lambda self, y: F.relu(y),
    "F.relu_inplace": lambda self, y: F.relu(y, inplace=True),
    "torch.relu": lambda self, y: torch.relu(y),
    "torch.relu_": lambda self, y: torch.relu_(y),
    "method": lambda self, y: y.relu(),
}
POOLS = {
    "MaxPool2d": (lambda self, y: self.maxpool(y), "max"),
    "AvgPool2d": (lambda self, y: self.avgpool(y), "avg"),
    "F.max_pool2d": (lambda self, y: F.max_pool2d(y, 2), "max"),
    "F.max_pool2d_kw": (lambda self, y: F.max_pool2d(y, kernel_size=(2, 2), stride=2), "max"),
    "torch.max_pool2d": (lambda self, y: torch.max_pool2d(y, 2), "max"),
    "F.avg_pool2d": (lambda self, y: F.avg_pool2d(y, 2), "avg"),
    "F.avg_pool2d_kw": (lambda self, y: F.avg_pool2d(y, kernel_size=2, stride=2, padding=0), "avg"),
}


class Pattern(nn.Module):
    def __init__(self, relu, tail):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.relu, self.relu_inplace = nn.ReLU(), nn.ReLU(inplace=True)
        self.maxpool, self.avgpool, self.shuffle = nn.MaxPool2d(2), nn.AvgPool2d(2), nn.PixelShuffle(2)
        self._relu, self._tail = relu, tail

    def forward(self, x):
        return self._tail(self, self._relu(self, self.conv(x))) * 2


@pytest.mark.parametrize("relu", list(RELUS))
@pytest.mark.parametrize("pool", list(POOLS))
def test_fx_pool_patterns(relu, pool):
    tail, kind = POOLS[pool]
    model = _seeded(lambda: Pattern(RELUS[relu], tail))
    fused = fuse(model)
    fm = fused_modules(fused)
    assert len(fm) == 1 and isinstance(fm[0], ConvReLUPool2d) and fm[0].pool == kind
    x = rand((2, 3, 8, 10), seed=8)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x))


@pytest.mark.parametrize("relu", ["module_inplace", "F.relu", "method"])
@pytest.mark.parametrize(
    "tail", [lambda self, y: self.shuffle(y), lambda self, y: F.pixel_shuffle(y, 2)],
    ids=["PixelShuffle", "F.pixel_shuffle"],
)
def test_fx_upsample_patterns(relu, tail):
    model = _seeded(lambda: Pattern(RELUS[relu], tail))
    fused = fuse(model)
    fm = fused_modules(fused)
    assert len(fm) == 1 and isinstance(fm[0], ConvReLUUpsample2d) and fm[0].scale == 2
    x = rand((2, 3, 5, 6), seed=9)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x))


class NotFusable(nn.Module):
    """Chains that must stay as they are."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.c3 = nn.Conv2d(4, 4, 3, padding=1, groups=2)
        self.c4 = nn.Conv2d(4, 4, 3, padding=2, dilation=2)
        self.c5 = nn.Conv2d(4, 4, 3, padding=1)
        self.c6 = nn.Conv2d(4, 4, 3, padding=1)
        self.c7 = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        y = self.c1(x)
        x = F.max_pool2d(F.relu(y), 2) + F.avg_pool2d(y, 2)  # conv output has two users
        r = F.relu(self.c2(x))
        x = F.max_pool2d(r, 2) + r[:, :, ::2, ::2]  # relu output has two users
        x = F.max_pool2d(F.relu(self.c3(x)), 2)  # groups
        x = F.max_pool2d(F.relu(self.c4(x)), 1)  # dilation
        x = F.max_pool2d(F.relu(self.c5(x)), 3, stride=1)  # overlapping windows
        x = F.max_pool2d(F.leaky_relu(self.c6(x)), 1)  # another activation
        return F.max_pool2d(F.relu(self.c7(x)), 1, ceil_mode=True)  # ceil mode


def test_fx_leaves_unfusable_chains():
    model = _seeded(NotFusable)
    fused = fuse(model)
    assert not fused_modules(fused)
    assert fused is not model and type(fused) is NotFusable  # nothing fused: a plain copy
    x = rand((1, 3, 32, 32), seed=10)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x))


class SharedConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        a = F.max_pool2d(F.relu(self.conv(x)), 2)
        b = F.avg_pool2d(F.relu(self.conv(x * 2)), 2)
        return a + b + F.max_pool2d(self.head(x), 2)  # head: no ReLU, not fused


def test_fx_conv_called_twice():
    model = _seeded(SharedConv)
    fused = fuse(model)
    fm = fused_modules(fused)
    assert len(fm) == 2 and {m.pool for m in fm} == {"max", "avg"}
    assert fm[0].weight is fm[1].weight  # one set of parameters, as in the original
    x = rand((1, 3, 8, 8), seed=11)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x))


class AttributeStyle(nn.Module):
    """conv / relu / pool modules as attributes, each called once."""

    def __init__(self):
        super().__init__()
        self.conv1, self.relu1, self.pool1 = nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        self.conv2, self.relu2, self.up2 = nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.PixelShuffle(2)

    def forward(self, x):
        return self.up2(self.relu2(self.conv2(self.pool1(self.relu1(self.conv1(x)))))) + 1


def test_fuse_attribute_style_keeps_class():
    model = _seeded(AttributeStyle)
    fused = fuse(model)
    assert type(fused) is AttributeStyle
    assert isinstance(fused.conv1, ConvReLUPool2d) and isinstance(fused.conv2, ConvReLUUpsample2d)
    assert isinstance(fused.relu1, nn.Identity) and isinstance(fused.pool1, nn.Identity)
    x = rand((1, 3, 8, 8), seed=17)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x))
    fused.load_state_dict(model.state_dict())


class ConvAlias(nn.Module):
    """The chain's conv is also held as ``self.stem``: one module, two names."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.features = nn.Sequential(self.stem, nn.ReLU(), nn.MaxPool2d(2))

    def forward(self, x):
        return self.features(x)


class PoolAlias(nn.Module):
    """The chain's pool is also held as ``self.pool`` (registered first: fx calls it so)."""

    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), self.pool)

    def forward(self, x):
        return self.features(x)


@pytest.mark.parametrize("factory", [ConvAlias, PoolAlias])
def test_fuse_module_with_two_names(factory):
    model = _seeded(factory)
    fused = fuse(model)
    assert len(fused_modules(fused)) == 1
    x = rand((1, 3, 8, 8), seed=20)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x))
    assert list(fused.state_dict()) == list(model.state_dict())


class SharedReLU(nn.Module):
    """One nn.ReLU object used after two convs (ResNet style): fused through the graph."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.relu, self.pool = (nn.Conv2d(3, 4, 3, padding=1),
                                                  nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                                                  nn.MaxPool2d(2))

    def forward(self, x):
        return self.pool(self.relu(self.c2(self.pool(self.relu(self.c1(x))))))


def test_fuse_shared_relu_module():
    model = _seeded(SharedReLU)
    fused = fuse(model)
    assert isinstance(fused, fx.GraphModule) and len(fused_modules(fused)) == 2
    x = rand((1, 3, 8, 8), seed=18)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x))
    assert list(fused.state_dict()) == list(model.state_dict())


class PartlyUsed(nn.Module):
    """forward does not use ``dec``, ``scale`` nor ``decode``; ``offset`` is a plain tensor
    attribute (not in the state_dict) that it does use."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.enc = nn.Conv2d(8, 8, 3, padding=1)
        self.dec = nn.Conv2d(8, 12, 3, padding=1)
        self.register_buffer("scale", torch.full((1,), 2.0))
        self.offset = torch.full((1,), 0.5)

    def forward(self, x):
        return F.max_pool2d(F.relu(self.enc(self.body(x))), 2) + self.offset

    def decode(self, y):
        return F.pixel_shuffle(self.dec(y), 2) * self.scale


@pytest.mark.parametrize("inplace", [False, True])
def test_fuse_graph_module_keeps_unused_children(inplace):
    model = _seeded(PartlyUsed)
    x = rand((1, 3, 8, 8), seed=23)
    with torch.no_grad():
        ref = model(x)
    keys = list(model.state_dict())
    fused = fuse(model, inplace=inplace)
    assert isinstance(fused, fx.GraphModule) and len(fused_modules(fused)) == 2
    assert list(fused.state_dict()) == keys
    fused.load_state_dict(model.state_dict())  # strict
    assert isinstance(fused.dec, nn.Conv2d) and torch.equal(fused.scale, model.scale)
    assert not hasattr(fused, "decode")  # documented: only forward is kept
    assert [type(m) for m in fused.body] == [ConvReLUPool2d, nn.Identity, nn.Identity]
    # the model keeps its modules, inplace or not (containers are copied before being changed)
    assert [type(m) for m in model.body] == [nn.Conv2d, nn.ReLU, nn.MaxPool2d]
    assert isinstance(model.enc, nn.Conv2d)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), ref)
        torch.testing.assert_close(model(x), ref)


class IndexedSequential(nn.Module):
    """Children of a Sequential called one by one, the conv output used twice: not fusable,
    although the container holds Conv2d, ReLU, MaxPool2d in a row."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))

    def forward(self, x):
        y = self.body[0](x)
        return self.body[2](self.body[1](y)) + y.mean()


def test_fuse_follows_dataflow_not_container_layout():
    model = _seeded(IndexedSequential)
    fused = fuse(model)
    assert not fused_modules(fused)
    x = rand((1, 3, 8, 8), seed=19)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x))


class Untraceable(nn.Module):
    """Data-dependent control flow: fx cannot trace it; its Sequential is still fused."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.conv = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        y = self.body(x)
        if y.sum() > 0:
            return F.max_pool2d(F.relu(self.conv(y)), 2)
        return y


def test_fuse_untraceable_model_sequential_only():
    model = _seeded(Untraceable)
    with pytest.raises(Exception):
        fx.symbolic_trace(model)
    fused = fuse(model)
    assert type(fused) is Untraceable
    assert isinstance(fused.body[0], ConvReLUPool2d) and isinstance(fused.conv, nn.Conv2d)
    x = rand((1, 3, 8, 8), seed=12)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x))


def test_fuse_sequential_subclass_with_custom_forward_untouched():
    class Custom(nn.Sequential):
        def forward(self, x):
            return self[2](self[1](self[0](x)) + 1)

    model = _seeded(lambda: nn.Sequential(Custom(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2))))
    fused = fuse(model)
    assert not fused_modules(fused)
    x = rand((1, 3, 8, 8), seed=13)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x))


def test_fuse_sequential_with_pixel_shuffle_decoder():
    model = _seeded(lambda: nn.Sequential(
        nn.Conv2d(4, 16, 3, padding=1), nn.ReLU(), nn.PixelShuffle(2),
        nn.Conv2d(4, 12, 3, padding=1), nn.ReLU(inplace=True), nn.PixelShuffle(2), nn.Sigmoid(),
    ))
    fused = fuse(model)
    assert [type(m) for m in fused_modules(fused)] == [ConvReLUUpsample2d] * 2
    x = rand((1, 4, 4, 5), seed=14)
    with torch.no_grad():
        out = fused(x)
        torch.testing.assert_close(out, model(x))
    assert out.shape == (1, 3, 16, 20)


# --------------------------------------------------------------------------------------------
# Triton backend through the modules (interpreter on CPU, tiny inputs)
# --------------------------------------------------------------------------------------------


@needs_triton
def test_fused_models_with_triton_backend():
    for factory, shape in ((MnistNet, (1, 1, 28, 28)), (vgg_style, (1, 3, 16, 16))):
        model = _seeded(factory).to(DEVICE)
        fused = fuse(model)
        for m in fused_modules(fused):
            m.backend = "triton"
        x = rand(shape, seed=15).to(DEVICE)
        with torch.no_grad():
            torch.testing.assert_close(fused(x), model(x), atol=1e-4, rtol=1e-4)


@needs_triton
def test_triton_module_channels_last_half():
    torch.manual_seed(1)
    m = ConvReLUUpsample2d(3, 2, 3, padding=1, backend="triton").to(DEVICE, torch.float16)
    ref = copy.deepcopy(m).double().cpu()
    ref.backend = "torch"
    x = rand((1, 3, 5, 4), seed=16).to(DEVICE, torch.float16).to(memory_format=CL)
    with torch.no_grad():
        out = m(x)
        torch.testing.assert_close(out.cpu().double(), ref(x.cpu().double()), atol=2e-2, rtol=2e-2)
    assert out.is_contiguous(memory_format=CL)
