"""Input normalization (fastcodec.images): accepted inputs, layouts, conversions and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fastcodec.images import from_rgb_uint8, to_rgb_uint8

RNG = np.random.default_rng(7)
RGB = RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
GRAY = RNG.integers(0, 256, size=(5, 7), dtype=np.uint8)


def check(out, layout, expect_rgb):
    rgb, got_layout = out
    assert got_layout == layout
    assert rgb.dtype == np.uint8 and rgb.shape == expect_rgb.shape and rgb.flags.c_contiguous
    np.testing.assert_array_equal(rgb, expect_rgb)


GRAY3 = np.repeat(GRAY[:, :, None], 3, axis=2)


# ------------------------------------------------------------------------------------ numpy
def test_numpy_layouts():
    check(to_rgb_uint8(RGB), "rgb", RGB)
    check(to_rgb_uint8(GRAY), "gray", GRAY3)
    check(to_rgb_uint8(GRAY[:, :, None]), "gray1", GRAY3)


def test_numpy_non_contiguous_input_gives_contiguous_copy():
    view = RGB[:, ::-1]
    check(to_rgb_uint8(view), "rgb", np.ascontiguousarray(view))


def test_numpy_rgba_needs_convert():
    rgba = np.concatenate([RGB, np.full((5, 7, 1), 9, np.uint8)], axis=2)
    with pytest.raises(ValueError, match="convert=True"):
        to_rgb_uint8(rgba)
    check(to_rgb_uint8(rgba, convert=True), "rgb", RGB)


def test_numpy_16_bit_needs_convert_and_scales_with_rounding():
    a = np.array([[0, 128, 129, 257, 385, 386, 65535]], dtype=np.uint16)
    with pytest.raises(ValueError, match="16-bit"):
        to_rgb_uint8(a)
    rgb, layout = to_rgb_uint8(a, convert=True)
    assert layout == "gray"
    # round(v / 257): 128/257 = 0.498 -> 0, 129/257 = 0.502 -> 1, 385/257 = 1.498, 386 -> 1.502
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 0, 1, 1, 1, 2, 255])
    swapped = a.astype(">u2" if np.little_endian else "<u2")  # either byte order
    with pytest.raises(ValueError, match="16-bit"):
        to_rgb_uint8(swapped)
    np.testing.assert_array_equal(to_rgb_uint8(swapped, convert=True)[0], rgb)


def test_numpy_bool_float_and_other_ints():
    b = np.array([[True, False]])
    with pytest.raises(TypeError, match="boolean"):
        to_rgb_uint8(b)
    np.testing.assert_array_equal(to_rgb_uint8(b, convert=True)[0][0, :, 0], [255, 0])

    f = np.array([[0.0, 0.5, 1.0]], dtype=np.float64)
    with pytest.raises(TypeError, match="uint8"):
        to_rgb_uint8(f)
    np.testing.assert_array_equal(to_rgb_uint8(f, convert=True)[0][0, :, 0], [0, 128, 255])
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        to_rgb_uint8(f * 2, convert=True)

    i = np.array([[0, 7, 255]], dtype=np.int64)
    with pytest.raises(TypeError, match="int64"):
        to_rgb_uint8(i)
    np.testing.assert_array_equal(to_rgb_uint8(i, convert=True)[0][0, :, 0], [0, 7, 255])
    with pytest.raises(ValueError, match="outside 0..255"):
        to_rgb_uint8(i - 1, convert=True)


@pytest.mark.parametrize("shape", [(0, 4, 3), (4, 0), (0, 0, 1)])
def test_empty_images_are_errors_even_with_convert(shape):
    for convert in (False, True):
        with pytest.raises(ValueError, match="empty"):
            to_rgb_uint8(np.zeros(shape, np.uint8), convert=convert)


@pytest.mark.parametrize("bad, exc, match", [
    ("image.png", TypeError, "expected an image"),
    ([[1, 2], [3, 4]], TypeError, "expected an image"),
    (None, TypeError, "expected an image"),
    (np.zeros(5, np.uint8), ValueError, "2-D or 3-D"),
    (np.zeros((2, 3, 4, 3), np.uint8), ValueError, "2-D or 3-D"),
    (np.zeros((4, 4, 2), np.uint8), ValueError, r"\[H, W, 3\]"),
    (np.zeros((4, 4, 5), np.uint8), ValueError, r"\[H, W, 3\]"),
    (np.zeros((4, 4), np.complex64), TypeError, "not an image dtype"),
])
def test_non_images(bad, exc, match):
    with pytest.raises(exc, match=match):
        to_rgb_uint8(bad, convert=True)


# ------------------------------------------------------------------------------------ PIL
def test_pil_rgb_and_l():
    check(to_rgb_uint8(Image.fromarray(RGB, "RGB")), "rgb", RGB)
    check(to_rgb_uint8(Image.fromarray(GRAY, "L")), "gray", GRAY3)


def test_pil_other_modes_need_convert():
    rgba = Image.fromarray(np.concatenate([RGB, np.zeros((5, 7, 1), np.uint8)], 2), "RGBA")
    with pytest.raises(ValueError, match="mode 'RGBA'.*convert=True"):
        to_rgb_uint8(rgba)
    check(to_rgb_uint8(rgba, convert=True), "rgb", RGB)  # alpha dropped, colour kept

    la = Image.fromarray(GRAY, "L").convert("LA")
    check(to_rgb_uint8(la, convert=True), "gray", GRAY3)

    pal = Image.fromarray(RGB, "RGB").quantize(16)
    rgb, layout = to_rgb_uint8(pal, convert=True)
    assert layout == "rgb"
    np.testing.assert_array_equal(rgb, np.asarray(pal.convert("RGB")))


def test_pil_16_bit_is_scaled():
    a = np.array([[0, 257, 65535]], dtype=np.uint16)
    im = Image.fromarray(a)
    assert im.mode.startswith("I")
    with pytest.raises(ValueError, match="convert=True"):
        to_rgb_uint8(im)
    rgb, layout = to_rgb_uint8(im, convert=True)
    assert layout == "gray"
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 1, 255])
    wide = Image.fromarray(np.array([[0, 70000]], dtype=np.int32), "I")  # 32-bit ints
    with pytest.raises(ValueError, match="0..70000, outside the 16-bit range"):
        to_rgb_uint8(wide, convert=True)


# ------------------------------------------------------------------------------------ torch
def test_torch_uint8_and_float_chw():
    t = torch.from_numpy(RGB).permute(2, 0, 1)
    check(to_rgb_uint8(t), "rgb", RGB)
    check(to_rgb_uint8(t.float() / 255), "rgb", RGB)
    check(to_rgb_uint8((t.float() / 255).requires_grad_()), "rgb", RGB)
    for dt in (torch.float16, torch.bfloat16, torch.float64):
        rgb, _ = to_rgb_uint8(t.to(dt) / 255)
        assert np.abs(rgb.astype(int) - RGB).max() <= 1
    g = torch.from_numpy(GRAY)
    check(to_rgb_uint8(g[None]), "gray1", GRAY3)
    check(to_rgb_uint8(g), "gray", GRAY3)


def test_torch_float_rounds_to_nearest_level():
    t = torch.tensor([[0.0, 0.5 / 255, 0.6 / 255, 1.0]])
    np.testing.assert_array_equal(to_rgb_uint8(t)[0][0, :, 0], [0, 0, 1, 255])


def test_torch_errors():
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        to_rgb_uint8(torch.full((3, 2, 2), 1.5))
    with pytest.raises(ValueError, match="NaN"):
        to_rgb_uint8(torch.full((3, 2, 2), float("nan")))
    with pytest.raises(ValueError, match="permute"):
        to_rgb_uint8(torch.zeros(8, 8, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="batch"):
        to_rgb_uint8(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="convert=True"):
        to_rgb_uint8(torch.zeros(4, 8, 8))
    assert to_rgb_uint8(torch.zeros(4, 8, 8), convert=True)[1] == "rgb"
    with pytest.raises(TypeError, match="boolean"):
        to_rgb_uint8(torch.zeros(3, 2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="empty"):
        to_rgb_uint8(torch.zeros(3, 0, 2))


# ------------------------------------------------------------------------------------ output
def test_from_rgb_uint8_layouts_and_outputs():
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 11, 13  # mean 11.33 -> 11
    rgb[0, 0] = (10, 11, 12)                            # mean 11
    rgb[0, 1] = (10, 12, 13)                            # mean 11.67 -> 12
    np.testing.assert_array_equal(from_rgb_uint8(rgb, "rgb"), rgb)
    gray = from_rgb_uint8(rgb, "gray")
    assert gray.shape == (2, 3) and gray.dtype == np.uint8
    np.testing.assert_array_equal(gray, [[11, 12, 11], [11, 11, 11]])
    assert from_rgb_uint8(rgb, "gray1").shape == (2, 3, 1)

    t = from_rgb_uint8(rgb, "rgb", "torch")
    assert t.dtype == torch.float32 and t.shape == (3, 2, 3)
    torch.testing.assert_close(t * 255, torch.from_numpy(rgb).permute(2, 0, 1).float())
    assert from_rgb_uint8(rgb, "gray1", "torch").shape == (1, 2, 3)
    assert from_rgb_uint8(rgb, "gray", "torch").shape == (2, 3)

    with pytest.raises(ValueError, match="layout"):
        from_rgb_uint8(rgb, "rgba")
    with pytest.raises(ValueError, match="output"):
        from_rgb_uint8(rgb, "rgb", "pil")
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        from_rgb_uint8(rgb[..., 0], "gray")


def test_gray_roundtrip_through_rgb_is_identity():
    rgb, layout = to_rgb_uint8(GRAY)
    np.testing.assert_array_equal(from_rgb_uint8(rgb, layout), GRAY)
    rgb, layout = to_rgb_uint8(GRAY[:, :, None])
    np.testing.assert_array_equal(from_rgb_uint8(rgb, layout), GRAY[:, :, None])
