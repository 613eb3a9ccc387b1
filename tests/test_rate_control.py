"""Rate control: the bisection over the quality grid, alone and through ``Codec.compress``."""

from __future__ import annotations

import numpy as np
import pytest

from fastcodec import rate_control

GRID = [1.0 + 0.25 * i for i in range(21)]


def _fake(values_per_image):
    """encode/measure pair where image i at grid level k measures values_per_image[i][k]."""
    calls = []

    def encode(indices, q):
        calls.append((len(indices), q))
        return [f"{i}@{q}".encode() for i in indices]

    def measure(index, blob):
        i, q = blob.decode().split("@")
        assert int(i) == index
        return values_per_image[index][GRID.index(float(q))]

    return encode, measure, calls


@pytest.mark.parametrize("target", [0.05, 0.1, 0.33, 0.5, 0.77, 1.0, 2.5])
def test_bpp_search_picks_the_highest_quality_under_the_target(target):
    rng = np.random.default_rng(0)
    curves = [np.sort(rng.uniform(0.05, 2.0, len(GRID))) for _ in range(5)]
    encode, measure, calls = _fake(curves)
    choices = rate_control.search(5, GRID, encode, measure, target,
                                  larger_is_better=False)
    for curve, c in zip(curves, choices):
        under = [k for k in range(len(GRID)) if curve[k] <= target]
        if under:
            assert c.met and c.quality == GRID[max(under)] and c.value <= target
        else:
            assert not c.met and c.quality == GRID[0]
    assert len({q for _, q in calls}) <= len(calls)
    assert len(calls) <= 5 * 5  # at most one call per image and bisection round


@pytest.mark.parametrize("target", [20.0, 27.3, 31.0, 40.0])
def test_psnr_search_picks_the_lowest_quality_over_the_target(target):
    rng = np.random.default_rng(1)
    curves = [np.sort(rng.uniform(22.0, 38.0, len(GRID))) for _ in range(4)]
    encode, measure, _ = _fake(curves)
    choices = rate_control.search(4, GRID, encode, measure, target,
                                  larger_is_better=True)
    for curve, c in zip(curves, choices):
        over = [k for k in range(len(GRID)) if curve[k] >= target]
        if over:
            assert c.met and c.quality == GRID[min(over)]
        else:
            assert not c.met and c.quality == GRID[-1]


def test_images_sharing_a_candidate_are_coded_in_one_batch():
    curves = [np.linspace(0.1, 2.0, len(GRID))] * 6
    encode, measure, calls = _fake(curves)
    rate_control.search(6, GRID, encode, measure, 0.9, larger_is_better=False)
    assert all(n == 6 for n, _ in calls)  # identical curves: every round is one batch of 6


# ------------------------------------------------------------------ through the API


@pytest.fixture(scope="module")
def codec():
    fastcodec = pytest.importorskip("fastcodec")
    return fastcodec.Codec(quality=4, device="cpu")


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(3)
    base = np.linspace(0, 255, 48 * 64).reshape(48, 64)
    rgb = np.stack([base, base[::-1], base.T.reshape(48, 64)], -1)
    return np.clip(rgb + rng.normal(0, 20, rgb.shape), 0, 255).astype(np.uint8)


def test_target_bpp_through_the_codec(codec, image):
    from fastcodec import info

    sizes = {q: 8 * len(codec.compress(image, quality=q)[0]) / image[..., 0].size
             for q in (1.0, 6.0)}
    target = float(np.mean(list(sizes.values())))
    (blob,) = codec.compress(image, target_bpp=target)
    (choice,) = codec.last_choices
    q = info(blob)["quality"]
    bpp = 8 * len(blob) / image[..., 0].size
    assert choice["met"] and bpp <= target and choice["quality"] == q
    stats = codec.last_stats  # the caller's one image; the search's trials counted apart
    assert stats["images"] == 1 and stats["megapixels"] == pytest.approx(image[..., 0].size / 1e6)
    assert 4 <= stats["trial_encodes"] <= 5 and stats["trial_decodes"] == 0  # 21 levels
    assert stats["seconds"] > 0 and stats["mp_per_s"] > 0
    if q < 6.0:  # the next grid quality up would overshoot
        (up,) = codec.compress(image, quality=q + 0.25)
        assert 8 * len(up) / image[..., 0].size > target
    assert "trial_encodes" not in codec.last_stats and codec.last_stats["images"] == 1


def test_target_psnr_through_the_codec(codec, image):
    from fastcodec import decompress, info
    from fastcodec.metrics import psnr

    (blob,) = codec.compress(image, target_psnr=10.0)  # any quality reaches 10 dB
    assert info(blob)["quality"] == 1.0 and codec.last_choices[0]["met"]
    stats = codec.last_stats
    assert stats["images"] == 1 and stats["trial_encodes"] == stats["trial_decodes"] >= 4
    (blob,) = codec.compress(image, target_psnr=99.0)  # none does: best effort, flagged
    (choice,) = codec.last_choices
    assert not choice["met"] and info(blob)["quality"] == 6.0
    assert choice["value"] == pytest.approx(psnr(image, decompress(blob)[0]))


def test_rate_control_arguments_are_checked(codec, image):
    with pytest.raises(ValueError, match="at most one"):
        codec.compress(image, quality=3, target_bpp=0.5)
    with pytest.raises(ValueError, match="target_bpp"):
        codec.compress(image, target_bpp=-1)
    with pytest.raises(ValueError, match="target_psnr"):
        codec.compress(image, target_psnr=float("nan"))
    # numpy scalars are numbers like the quality's
    assert codec.compress(image, target_bpp=np.float32(1.0)) == codec.compress(image,
                                                                              target_bpp=1.0)
    assert codec.compress(image, target_psnr=np.int64(25)) == codec.compress(image,
                                                                             target_psnr=25.0)
