"""The Python API (fastcodec.compress / decompress / info / Codec)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import fastcodec
from fastcodec.container import FormatError, pack, read_header, unpack
from fastcodec.samples import sample_paths
from fastcodec.zoo import DEFAULT_MODEL, load_model

SIZES = [(1, 1), (15, 17), (16, 16), (33, 65), (100, 37)]


def smooth(h, w, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / max(w, 1), yy / max(h, 1), (xx + yy) / max(h + w, 1)], -1) * 200 + 20
    return np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)


def psnr(a, b) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def codec():
    return fastcodec.Codec(quality=4, device="cpu", threads=2)


@pytest.fixture(scope="module")
def sample():
    with Image.open(sample_paths()[0]) as im:
        return np.asarray(im.convert("RGB"))


def repack(blob, **changes):
    header, streams = unpack(blob)
    fields = dict(model_id=header.model_id, weights_hash=header.weights_hash,
                  quality=header.quality, height=header.height, width=header.width,
                  layout=header.layout, latent_shape=header.latent_shape, streams=streams)
    fields.update(changes)
    return pack(**fields)


def _default_m() -> int:
    """Latent channels of the default model."""
    return load_model(DEFAULT_MODEL).model.M


# ------------------------------------------------------------------------------------ roundtrips
def test_mixed_sizes_roundtrip(codec):
    images = [smooth(h, w, i) for i, (h, w) in enumerate(SIZES)]
    blobs = codec.compress(images)
    assert len(blobs) == len(images) and all(isinstance(b, bytes) for b in blobs)
    assert codec.last_stats["images"] == len(images) and codec.last_stats["op"] == "compress"
    out = codec.decompress(blobs)
    assert codec.last_stats["op"] == "decompress"
    for im, dec, blob in zip(images, out, blobs):
        assert dec.shape == im.shape and dec.dtype == np.uint8
        hd = read_header(blob)
        assert (hd.height, hd.width, hd.layout) == (im.shape[0], im.shape[1], "rgb")
        assert hd.latent_shape == (_default_m(), -(-im.shape[0] // 16), -(-im.shape[1] // 16))
    assert psnr(images[3], out[3]) > 12  # a smooth 33x65 image comes back recognisably


def test_layouts_and_outputs(codec):
    rgb = smooth(24, 40)
    gray = rgb[..., 1].copy()
    t_u8 = torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
    batch = torch.stack([t_u8, t_u8.flip(-1)]).float() / 255
    inputs = [rgb, gray, gray[:, :, None], Image.fromarray(rgb), Image.fromarray(gray), t_u8,
              batch]
    blobs = codec.compress(inputs)
    assert len(blobs) == 8  # the 4-D batch counts as two images
    layouts = [read_header(b).layout for b in blobs]
    assert layouts == ["rgb", "gray", "gray1", "rgb", "gray", "rgb", "rgb", "rgb"]
    shapes = [d.shape for d in codec.decompress(blobs)]
    assert shapes == [(24, 40, 3), (24, 40), (24, 40, 1), (24, 40, 3), (24, 40), (24, 40, 3),
                      (24, 40, 3), (24, 40, 3)]
    tt = codec.decompress(blobs, output="torch")
    assert [tuple(t.shape) for t in tt] == [(3, 24, 40), (24, 40), (1, 24, 40), (3, 24, 40),
                                            (24, 40), (3, 24, 40), (3, 24, 40), (3, 24, 40)]
    assert all(t.dtype == torch.float32 for t in tt)
    np.testing.assert_array_equal((tt[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy(),
                                  codec.decompress(blobs[0])[0])
    # same pixels whatever the container type: numpy, PIL, torch uint8 and torch float agree
    assert blobs[0] == blobs[3] == blobs[5]
    assert blobs[1] == blobs[4]
    assert blobs[6] == blobs[0]  # float NCHW in [0, 1] holding the same levels


def test_gray_is_coded_as_equal_channels(codec):
    gray = smooth(20, 36)[..., 0].copy()
    b_gray, b_rgb = codec.compress([gray, np.repeat(gray[:, :, None], 3, axis=2)])
    assert unpack(b_gray)[1] == unpack(b_rgb)[1]  # the same streams, only the layout differs
    d_gray, d_rgb = codec.decompress([b_gray, b_rgb])
    np.testing.assert_array_equal(d_gray, (d_rgb.astype(np.uint16).sum(2) + 1) // 3)


def test_module_functions_and_determinism(codec):
    im = smooth(18, 50, 3)
    a = fastcodec.compress(im, quality=4, device="cpu", threads=1)
    b = fastcodec.compress([im], quality=4.0, device="cpu", threads=2, batch_size=1)
    assert a == b == codec.compress(im)
    out = fastcodec.decompress(a[0], device="cpu")
    assert len(out) == 1 and out[0].shape == im.shape
    np.testing.assert_array_equal(out[0], fastcodec.decompress(a, device="cpu", threads=1)[0])
    assert fastcodec.compress([], device="cpu") == [] and codec.decompress([]) == []


def test_convert_paths(codec):
    rgba = np.dstack([smooth(16, 16), np.full((16, 16), 7, np.uint8)])
    with pytest.raises(ValueError, match="convert=True"):
        codec.compress(rgba)
    b_rgba = codec.compress(rgba, convert=True)
    assert b_rgba == codec.compress(rgba[..., :3])
    deep = (smooth(16, 16).astype(np.uint16) * 257)
    with pytest.raises(ValueError, match="16-bit"):
        codec.compress(deep)
    assert codec.compress(deep, convert=True) == codec.compress(smooth(16, 16))
    with pytest.raises(TypeError, match="boolean"):
        codec.compress(np.zeros((8, 8), bool))
    assert read_header(codec.compress(np.zeros((8, 8), bool), convert=True)[0]).layout == "gray"
    with pytest.raises(ValueError, match="empty"):
        codec.compress(np.zeros((0, 8, 3), np.uint8))
    with pytest.raises(TypeError, match="expected an image"):
        codec.compress("photo.png")
    with pytest.raises(ValueError, match=r"image 1: .*4 channels"):
        codec.compress([smooth(8, 8), rgba])
    pil = Image.fromarray(rgba, "RGBA")
    with pytest.raises(ValueError, match="mode 'RGBA'"):
        codec.compress(pil)
    assert codec.compress(pil, convert=True) == b_rgba


# ------------------------------------------------------------------------------------ quality
def test_quality_snapping_and_errors():
    c = fastcodec.Codec(3.3, "cpu", threads=1)
    assert c.quality == 3.25
    assert read_header(c.compress(smooth(8, 8))[0]).quality == 3.25
    assert read_header(c.compress(smooth(8, 8), quality=5.9)[0]).quality == 6.0
    for bad in (0.5, 6.5, float("nan")):
        with pytest.raises(ValueError, match=r"\[1, 6\]"):
            fastcodec.Codec(bad, "cpu")
    with pytest.raises(TypeError, match="quality"):
        fastcodec.compress(smooth(8, 8), quality="high", device="cpu")


def test_sample_psnr_at_quality_6(sample):
    c = fastcodec.Codec(6, "cpu", threads=2)
    blob, = c.compress(sample)
    dec, = c.decompress(blob)
    assert dec.shape == sample.shape
    assert psnr(sample, dec) > 15.0
    assert fastcodec.info(blob)["bpp"] < 8


def test_bpp_is_monotone_in_quality(sample):
    crop = sample[128:384, 192:448]  # 256x256 of the sample keeps the sweep fast
    c = fastcodec.Codec(1, "cpu", threads=2)
    size = {q: len(c.compress(crop, quality=q)[0]) for q in (1, 2, 3, 3.25, 3.5, 4, 5, 6)}
    ints = [size[q] for q in (1, 2, 3, 4, 5, 6)]
    assert all(a < b for a, b in zip(ints, ints[1:])), size
    assert size[3] < size[3.25] < size[3.5], size


def test_every_installed_model_codes_and_old_files_still_decode():
    """Files record their model: a file made with an older shipped model decodes with the
    default codec (which loads that model for it), next to files of the current one."""
    from fastcodec.zoo import available_models

    image = smooth(40, 56, seed=3)
    blobs = []
    for model_id in available_models():
        blob, = fastcodec.Codec(4, "cpu", model=model_id, threads=1).compress(image)
        assert fastcodec.info(blob)["model_id"] == model_id
        blobs.append(blob)
    for blob, out in zip(blobs, fastcodec.decompress(blobs, device="cpu")):
        assert out.shape == image.shape and psnr(image, out) > 20.0


# ------------------------------------------------------------------------------------ info
def test_info(codec):
    blob, = codec.compress(smooth(33, 65))
    d = fastcodec.info(blob)
    assert d["model_id"] == DEFAULT_MODEL and d["quality"] == 4.0 and d["version"] == 1
    assert (d["height"], d["width"], d["layout"]) == (33, 65, "rgb")
    assert d["latent_shape"] == [_default_m(), 3, 5] and d["num_streams"] == 1
    assert (d["pad_bottom"], d["pad_right"]) == (15, 15)
    assert d["bytes"] == len(blob) == d["total_bytes"]
    assert d["bpp"] == pytest.approx(8 * len(blob) / (33 * 65))
    assert len(d["weights_hash"]) == 16
    with pytest.raises(FormatError):
        fastcodec.info(b"\x89PNG\r\n\x1a\n0000000000")
    with pytest.raises(TypeError):
        fastcodec.info("not bytes")


# ------------------------------------------------------------------------------------ bad data
def test_foreign_and_damaged_blobs(codec):
    blob, = codec.compress(smooth(20, 20))
    with pytest.raises(FormatError, match="not installed"):
        codec.decompress(repack(blob, model_id="nope-1"))
    with pytest.raises(FormatError, match="0000000000000000"):
        codec.decompress(repack(blob, weights_hash=b"\0" * 8))
    with pytest.raises(FormatError, match="quality 2.1"):
        codec.decompress(repack(blob, quality=2.1))
    damaged = bytearray(blob)
    damaged[-5] ^= 0xFF
    with pytest.raises(FormatError, match="CRC"):
        codec.decompress(bytes(damaged))
    _, streams = unpack(blob)
    bad = bytearray(streams[0])
    bad[len(bad) // 2] ^= 0xFF
    with pytest.raises(FormatError, match="stream 0 of 1 is corrupt") as info:
        codec.decompress(repack(blob, streams=[bytes(bad)]))
    assert type(info.value) is FormatError
    with pytest.raises(FormatError, match="truncated"):
        codec.decompress(blob[:-10])
    with pytest.raises(TypeError, match="bytes"):
        codec.decompress("blob")
    with pytest.raises(ValueError, match="output"):
        codec.decompress(blob, output="pil")
    with pytest.raises(ValueError, match="unknown model"):
        fastcodec.Codec(model="nope-1", device="cpu")
    assert issubclass(fastcodec.FormatError, ValueError)


def test_errors_name_the_callers_image(codec):
    """In a list, the damaged blob is named by its position in the caller's list, whatever
    the model groups (a blob of another model sits in between) and however it is damaged."""
    blob, = codec.compress(smooth(20, 20))
    other, = fastcodec.Codec(4, "cpu", model="fcf96-v6").compress(smooth(20, 20))
    _, streams = unpack(blob)
    bad = bytearray(streams[0])
    bad[len(bad) // 2] ^= 0xFF
    corrupt_stream = repack(blob, streams=[bytes(bad)])
    crc = bytearray(blob)
    crc[-5] ^= 0xFF
    cases = [(corrupt_stream, "stream 0 of 1 is corrupt"), (bytes(crc), "CRC"),
             (blob[:-10], "truncated"), (repack(blob, model_id="nope-1"), "not installed")]
    for damaged, what in cases:
        with pytest.raises(FormatError, match=f"^image 3: .*{what}"):
            codec.decompress([blob, other, blob, damaged, other])


def test_import_is_cheap(tmp_path):
    code = ("import sys, fastcodec; fastcodec.FormatError; fastcodec.info; "
            "print('torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"
    assert {"compress", "decompress", "info", "Codec", "FormatError"} <= set(dir(fastcodec))
