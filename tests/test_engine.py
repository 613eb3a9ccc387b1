"""The batch engine (fastcodec.engine): ordering, sub-streams, thread-count independence,
agreement with the model's reference coding path, stats and error mapping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastcodec import engine as engine_mod
from fastcodec.container import FormatError, channel_ranges, pack, unpack
from fastcodec.engine import Engine, num_streams
from fastcodec.zoo import load_model

SIZES = [(20, 30), (33, 17), (20, 30), (64, 64), (20, 30), (1, 1)]


def smooth(h, w, seed):
    """A smooth colour image (gradients plus a little noise): uint8 [h, w, 3]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / max(w, 1), yy / max(h, 1), (xx + yy) / max(h + w, 1)], -1) * 200 + 20
    return np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)


IMAGES = [smooth(h, w, i) for i, (h, w) in enumerate(SIZES)]


@pytest.fixture(scope="module")
def shipped():
    return load_model()


def blobs_of(shipped, coded, images, quality):
    return [pack(model_id=shipped.model_id, weights_hash=shipped.weights_hash, quality=quality,
                 height=im.shape[0], width=im.shape[1], layout="rgb", latent_shape=shape,
                 streams=streams) for im, (shape, streams) in zip(images, coded)]


def test_num_streams_policy():
    assert num_streams(1, 1, 128) == 1
    assert num_streams(1024, 2048, 128) == 1  # exactly 2 megapixels
    assert num_streams(1024, 2049, 128) == 2  # padded to 2064 wide: a bit more
    assert num_streams(4096, 4096, 128) == 8
    assert num_streams(40000, 40000, 128) == 16  # capped
    assert num_streams(40000, 40000, 4) == 4  # never more streams than channels


def test_order_grouping_and_thread_independence(shipped, monkeypatch):
    # small streams budget: the 64x64 image gets 4 sub-streams, the others 1 or 2
    monkeypatch.setattr(engine_mod, "PIXELS_PER_STREAM", 1024)
    eng1 = Engine(shipped, threads=1, batch_size=2)
    eng2 = Engine(shipped, threads=2, batch_size=2)
    coded1 = eng1.encode(IMAGES, 3.0)
    coded2 = eng2.encode(IMAGES, 3.0)
    assert coded1 == coded2  # bytes independent of the thread count
    for im, (shape, streams) in zip(IMAGES, coded1):
        h, w = im.shape[:2]
        assert shape == (shipped.model.M, -(-h // 16), -(-w // 16))
        assert len(streams) == num_streams(h, w, shipped.model.M)
    assert len(coded1[3][1]) == 4
    blobs = blobs_of(shipped, coded1, IMAGES, 3.0)
    out1 = eng1.decode(blobs)
    out2 = eng2.decode(blobs)
    for im, (hd1, a), (hd2, b) in zip(IMAGES, out1, out2):
        assert a.shape == im.shape and a.dtype == np.uint8 and a.flags.c_contiguous
        np.testing.assert_array_equal(a, b)
        assert hd1 == hd2


def test_matches_the_models_reference_path(shipped):
    """One stream per small image holds exactly what CodecModel.compress codes (the engine
    runs channels_last in batches, so allow the odd symbol rounded the other way)."""
    eng = Engine(shipped, threads=2, batch_size=4)
    imgs = IMAGES[:3]
    coded = eng.encode(imgs, 4.5)
    coder = shipped.coder(4.5)
    for im, (shape, streams) in zip(imgs, coded):
        x = torch.from_numpy(im).permute(2, 0, 1)[None].float() / 255
        ref, _ = shipped.model.compress_latents(x, 3.5)
        got = coder.decode(streams[0], np.broadcast_to(
            np.arange(shape[0], dtype=np.int32)[:, None, None], shape))
        diff = np.abs(got.astype(np.int64) - ref[0])
        assert diff.max() <= 1 and np.mean(diff) < 1e-3
    # and the engine's decoder reconstructs like the model's
    (hd, rgb), = eng.decode(blobs_of(shipped, coded[:1], imgs[:1], 4.5))
    sym = coder.decode(coded[0][1][0], np.broadcast_to(
        np.arange(coded[0][0][0], dtype=np.int32)[:, None, None], coded[0][0]))
    ref = shipped.model.decompress_latents(sym[None], dict(
        quality=3.5, height=hd.height, width=hd.width))
    ref = (ref[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    assert np.abs(ref.astype(int) - rgb).max() <= 1


def test_stats(shipped):
    eng = Engine(shipped, threads=1)
    coded = eng.encode(IMAGES[:2], 2.0)
    s = eng.last_stats
    assert s.images == 2 and s.megapixels == pytest.approx((20 * 30 + 33 * 17) / 1e6)
    assert s.seconds > 0 and s.mp_per_s > 0 and s.images_per_s > 0
    eng.decode(blobs_of(shipped, coded, IMAGES[:2], 2.0))
    assert eng.last_stats.images == 2
    eng.encode(IMAGES[:1], 2.0)
    assert eng.stats["encode"].images == 3 and eng.stats["decode"].images == 2
    assert set(eng.stats["encode"].as_dict()) == {
        "images", "megapixels", "seconds", "mp_per_s", "images_per_s"}
    assert eng.encode([], 2.0) == [] and eng.decode([]) == []


def test_bad_settings_and_inputs(shipped):
    with pytest.raises(ValueError, match="threads"):
        Engine(shipped, threads=0)
    with pytest.raises(ValueError, match="batch_size"):
        Engine(shipped, batch_size=0)
    with pytest.raises(ValueError, match="CUDA"):
        Engine(shipped, transform_dtype=torch.float16)
    with pytest.raises(ValueError, match="transform_dtype"):
        Engine(shipped, transform_dtype="int8")
    eng = Engine(shipped, threads=1)
    with pytest.raises(ValueError, match="no tables for quality 3.1"):
        eng.encode(IMAGES[:1], 3.1)
    with pytest.raises(ValueError, match=r"image 1: expected uint8 \[H, W, 3\]"):
        eng.encode([IMAGES[0], IMAGES[0][..., 0]], 3.0)


def _corrupt(data: bytes, pos: int) -> bytes:
    b = bytearray(data)
    b[pos] ^= 0x5A
    return bytes(b)


def test_corrupt_streams_raise_format_error(shipped, monkeypatch):
    monkeypatch.setattr(engine_mod, "PIXELS_PER_STREAM", 1024)
    eng = Engine(shipped, threads=2)
    im = IMAGES[3]  # 64x64: 4 sub-streams
    (shape, streams), = eng.encode([im], 5.0)
    assert len(streams) == 4
    ranges = channel_ranges(shape[0], 4)
    assert ranges[2] == (shape[0] // 2, 3 * shape[0] // 4)  # the third quarter of the channels
    for damaged in (_corrupt(streams[2], 0), streams[2][:-3], streams[2] + b"\0" * 4):
        bad = list(streams)
        bad[2] = damaged
        blob = pack(model_id=shipped.model_id, weights_hash=shipped.weights_hash, quality=5.0,
                    height=64, width=64, layout="rgb", latent_shape=shape, streams=bad)
        unpack(blob)  # a valid container (CRCs recomputed): only the coder can notice
        with pytest.raises(FormatError, match="stream 2 of 4 is corrupt") as info:
            eng.decode([blob])
        assert type(info.value) is FormatError


def test_streams_too_short_for_their_symbols_are_refused_before_decoding(shipped, monkeypatch):
    """A stream must hold at least the fewest bits its symbols can cost with the model's tables:
    a crafted file of a few kB that declares a 16384x16384 image fails at parse time, with no
    decoding buffer allocated; real streams, even of flat images, are always above the bound."""
    from fastcodec.entropy.cdf import min_code_bits

    monkeypatch.setattr(engine_mod, "PIXELS_PER_STREAM", 1024)
    eng = Engine(shipped, threads=2)
    flat = [np.full((64, 48, 3), v, np.uint8) for v in (0, 128, 255)]
    for q in shipped.qualities:
        t = shipped.tables[q]
        bits = min_code_bits(t.cdfs, t.cdf_lengths, t.precision)
        coded = eng.encode(flat, q)
        for (shape, streams), im in zip(coded, flat):
            assert len(streams) == 3
            for (c0, c1), stream in zip(channel_ranges(shape[0], 3), streams):
                # above the bound itself, not just the slackened one the engine checks
                assert 8 * len(stream) >= shape[1] * shape[2] * bits[c0:c1].sum(), (q, c0)
        decoded = eng.decode(blobs_of(shipped, coded, flat, q))
        assert all(np.abs(d.astype(int) - im).max() < 64 for (_, d), im in zip(decoded, flat))

    (shape, streams), = eng.encode(flat[:1], 1.0)
    monkeypatch.setattr(Engine, "_submit_decode", lambda *a: pytest.fail("decoding started"))
    huge = pack(model_id=shipped.model_id, weights_hash=shipped.weights_hash, quality=1.0,
                height=16384, width=16384, layout="rgb", latent_shape=(shape[0], 1024, 1024),
                streams=streams)
    assert len(huge) < 4096
    with pytest.raises(FormatError, match=r"image 0: range-coder stream 0 of 3 has \d+ bytes, "
                                          r"but its \d+ symbols need at least \d+"):
        eng.decode([huge])


def test_min_code_bits_reads_the_largest_frequency_of_each_row():
    from fastcodec.entropy.cdf import min_code_bits, pack_cdfs

    cdfs, lengths = pack_cdfs([np.array([0, 16384, 65536]), np.array([0, 65535, 65536]),
                               np.array([0, 1, 2, 65536]), np.array([0, 65536])])
    np.testing.assert_allclose(min_code_bits(cdfs, lengths, 16),
                               [16 - np.log2(49152), 16 - np.log2(65535), 16 - np.log2(65534), 0])
    assert min_code_bits(np.array([[0, 8, 16, 16]]), [3], 4)[0] == pytest.approx(1.0)


def test_foreign_blobs_raise_format_error(shipped):
    eng = Engine(shipped, threads=1)
    coded = eng.encode(IMAGES[:1], 3.0)
    (shape, streams), = coded
    kw = dict(height=20, width=30, layout="rgb", latent_shape=shape, streams=streams)
    other_hash = pack(model_id=shipped.model_id, weights_hash=b"\1" * 8, quality=3.0, **kw)
    with pytest.raises(FormatError, match=f"0101010101010101.*{shipped.weights_hash.hex()}"):
        eng.decode([other_hash])
    other_model = pack(model_id="other-9", weights_hash=shipped.weights_hash, quality=3.0, **kw)
    with pytest.raises(FormatError, match=f"'other-9'.*'{shipped.model_id}'"):
        eng.decode([other_model])
    off_grid = pack(model_id=shipped.model_id, weights_hash=shipped.weights_hash, quality=3.1,
                    **kw)
    with pytest.raises(FormatError, match="quality 3.1 is not one of"):
        eng.decode([off_grid])
    with pytest.raises(FormatError, match="not an .fcc file"):
        eng.decode([b"hello world"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [None, torch.float16, torch.bfloat16])
def test_cuda_roundtrip_decodes_on_cpu(dtype):
    gpu = Engine(load_model(device="cuda"), threads=4, transform_dtype=dtype)
    cpu = Engine(load_model(), threads=2)
    coded = gpu.encode(IMAGES, 4.0)
    blobs = blobs_of(gpu.shipped, coded, IMAGES, 4.0)
    for (_, a), (_, b), im in zip(gpu.decode(blobs), cpu.decode(blobs), IMAGES):
        assert a.shape == b.shape == im.shape
        assert np.abs(a.astype(int) - b).mean() < 2.0  # the same symbols, transforms may differ


def test_cpu_bfloat16_transforms_code_what_float32_decodes(shipped):
    """bfloat16 transforms on CPU: the symbols may differ slightly from float32's, but the
    streams are ordinary ones (a float32 engine decodes them) and the pictures agree."""
    fast = Engine(shipped, threads=1, transform_dtype=torch.bfloat16)
    ref = Engine(shipped, threads=1)
    images = [smooth(48, 80, 7), smooth(33, 17, 8)]
    blobs = blobs_of(shipped, fast.encode(images, 4.0), images, 4.0)
    ref_blobs = blobs_of(shipped, ref.encode(images, 4.0), images, 4.0)
    for (_, a), (_, b), (_, c), im in zip(
        ref.decode(blobs), fast.decode(blobs), ref.decode(ref_blobs), images
    ):
        assert a.shape == b.shape == c.shape == im.shape
        assert np.abs(a.astype(int) - b).mean() < 2.0  # same symbols, bf16 vs fp32 synthesis
        assert np.abs(a.astype(int) - c).mean() < 3.0  # bf16 vs fp32 analysis
