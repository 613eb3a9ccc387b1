"""``fastcodec demo``: the README's main-job command on the bundled sample, and on given images."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastcodec import cli
from fastcodec.container import unpack
from fastcodec.samples import sample_paths


def test_demo_on_the_bundled_sample(tmp_path, capsys):
    out_dir = tmp_path / "demo"
    assert cli.main(["demo", "-o", str(out_dir), "-q", "2", "6"]) == 0
    out = capsys.readouterr().out
    (sample,) = sample_paths()
    names = {f"{sample.stem}-q{q}{ext}" for q in (2, 6) for ext in (".fcc", ".png")}
    assert {p.name for p in out_dir.iterdir()} == names | {"demo.json"}

    header = out.splitlines()[2].split()
    assert header[:5] == ["image", "size", "quality", "bpp", "PSNR"] and "MS-SSIM" in header
    rows = [line.split() for line in out.splitlines() if line.startswith(sample.name)]
    assert [r[1:3] for r in rows] == [["768x512", "2"], ["768x512", "6"]]
    assert all(re.fullmatch(r"\d+\.\d{3}", r[3]) and re.fullmatch(r"\d+\.\d{2}", r[4])
               for r in rows)  # bpp and PSNR are printed
    assert f"written to {out_dir}/" in out

    records = json.loads((out_dir / "demo.json").read_text())
    assert [r["quality"] for r in records] == [2.0, 6.0]
    with Image.open(sample) as im:
        original = np.asarray(im.convert("RGB"))
    for rec in records:
        blob = Path(rec["fcc"]).read_bytes()
        header_, _ = unpack(blob)
        assert (header_.width, header_.height, header_.quality) == (768, 512, rec["quality"])
        assert rec["bpp"] == pytest.approx(8 * len(blob) / (768 * 512))
        with Image.open(rec["png"]) as im:
            decoded = np.asarray(im)
        assert decoded.shape == original.shape
        mse = np.mean((decoded.astype(np.float64) - original) ** 2)
        assert rec["psnr"] == pytest.approx(10 * np.log10(255**2 / mse), rel=1e-6)
        assert rec["psnr"] > 15 and 0 < rec["ms_ssim"] <= 1
        assert rec["encode_mp_per_s"] > 0 and rec["decode_mp_per_s"] > 0
    assert records[1]["bpp"] > records[0]["bpp"]  # quality 6 spends more bits than quality 2


def test_demo_on_given_images_replaces_its_own_outputs(tmp_path, capsys):
    rng = np.random.default_rng(0)
    img = np.clip(np.linspace(0, 255, 48)[None, :, None] + rng.normal(0, 5, (32, 48, 3)),
                  0, 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "mine.png")
    Image.fromarray(img[..., 0]).save(tmp_path / "gray.png")
    out_dir = tmp_path / "out"
    args = ["demo", str(tmp_path / "mine.png"), str(tmp_path / "gray.png"), "-o", str(out_dir),
            "-q", "3"]
    for _ in range(2):  # a second run replaces the files of the first
        assert cli.main(args) == 0
        out = capsys.readouterr().out
        assert "mine.png" in out and "48x32" in out
    assert {p.name for p in out_dir.iterdir()} == {
        "mine-q3.fcc", "mine-q3.png", "gray-q3.fcc", "gray-q3.png", "demo.json"}
    with Image.open(out_dir / "gray-q3.png") as im:
        assert im.mode == "L" and im.size == (48, 32)

    Image.fromarray(img).save(tmp_path / "mine.jpg")
    assert cli.main(["demo", str(tmp_path / "mine.png"), str(tmp_path / "mine.jpg"),
                     "-o", str(tmp_path / "o2")]) == 2
    assert "same name" in capsys.readouterr().err


def test_demo_on_a_tiny_image_and_a_file_as_out(tmp_path, capsys):
    """MS-SSIM needs 11 px per side: a smaller image gets n/a, not a traceback; -o naming a
    file is a usage error before anything is coded."""
    img = np.random.default_rng(1).integers(0, 256, (8, 9, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "tiny.png")
    assert cli.main(["demo", str(tmp_path / "tiny.png"), "-o", str(tmp_path / "o"), "-q", "3"]) == 0
    row, = [line.split() for line in capsys.readouterr().out.splitlines()
            if line.startswith("tiny.png")]
    assert row[1] == "9x8" and row[5] == "n/a"
    record, = json.loads((tmp_path / "o" / "demo.json").read_text())
    assert record["ms_ssim"] is None and record["psnr"] > 10

    (tmp_path / "a-file").write_text("x")
    assert cli.main(["demo", str(tmp_path / "tiny.png"), "-o", str(tmp_path / "a-file")]) == 2
    assert "not a folder" in capsys.readouterr().err
