"""fastcodec eval on two small crops of the bundled sample: every point recorded, bpp from the real
encoded bytes, sane PSNR ordering, BD-rates, strict JSON and a valid PNG plot."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from fastcodec import evaluate, metrics
from fastcodec.evaluate import points, report
from fastcodec.samples import sample_paths

JPEG_Q = [10, 30, 60, 95]
WEBP_Q = [10, 30, 60, 90]
AVIF_Q = [30, 70]  # two points only: its BD-rate must be reported as not computable
FC_Q = [2.0, 5.0]


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """Two PNG crops of the bundled sample, 96x64 and 80x48 (W x H)."""
    folder = tmp_path_factory.mktemp("eval-images")
    with Image.open(sample_paths()[0]) as im:
        rgb = np.asarray(im.convert("RGB"))
    paths = []
    for name, (y, x, h, w) in {"a.png": (200, 300, 64, 96), "b.png": (40, 500, 48, 80)}.items():
        Image.fromarray(rgb[y:y + h, x:x + w]).save(folder / name)
        paths.append(folder / name)
    return folder, paths


@pytest.fixture(scope="module")
def anchors_only(crops):
    folder, _ = crops
    lines = []
    results = evaluate.evaluate(
        [folder], qualities=[], anchors=["jpeg", "webp", "avif"],
        anchor_qualities={"jpeg": JPEG_Q, "webp": WEBP_Q, "avif": AVIF_Q}, progress=lines.append)
    return results, lines


def _strict_json(text: str) -> dict:
    def reject(token):
        raise ValueError(f"non-standard JSON constant {token}")
    return json.loads(text, parse_constant=reject)


def test_every_point_with_real_sizes(anchors_only, crops):
    results, lines = anchors_only
    _, paths = crops
    assert [i["name"] for i in results["images"]] == ["a.png", "b.png"]
    assert [(i["height"], i["width"]) for i in results["images"]] == [(64, 96), (48, 80)]
    sweeps = {"jpeg": JPEG_Q, "webp": WEBP_Q, "avif": AVIF_Q}
    assert list(results["codecs"]) == ["jpeg", "webp", "avif"]
    for name, qualities in sweeps.items():
        entry = results["codecs"][name]
        assert [p["quality"] for p in entry["points"]] == qualities
        for point in entry["points"]:
            assert [r["image"] for r in point["per_image"]] == ["a.png", "b.png"]
            for record, path in zip(point["per_image"], paths):
                rgb = np.asarray(Image.open(path).convert("RGB"))
                blob = evaluate.anchor_encode(name, rgb, point["quality"], entry["settings"])
                assert record["bytes"] == len(blob)
                assert record["bpp"] == pytest.approx(8 * len(blob) / (rgb.shape[0] * rgb.shape[1]))
                decoded = evaluate.anchor_decode(blob)
                assert record["psnr"] == pytest.approx(metrics.psnr(rgb, decoded))
                assert record["ms_ssim"] == pytest.approx(metrics.ms_ssim(rgb, decoded))
            assert point["bpp"] == pytest.approx(np.mean([r["bpp"] for r in point["per_image"]]))
            assert point["psnr"] == pytest.approx(np.mean([r["psnr"] for r in point["per_image"]]))
            assert point["bytes"] == sum(r["bytes"] for r in point["per_image"])
            assert point["encode_s"] >= 0 and point["decode_s"] >= 0
    jpeg = {p["quality"]: p for p in results["codecs"]["jpeg"]["points"]}
    assert jpeg[95]["psnr"] > jpeg[10]["psnr"] + 5
    assert jpeg[95]["bpp"] > jpeg[10]["bpp"]
    assert results["codecs"]["avif"]["settings"]["speed"] == evaluate.AVIF_SPEED
    assert len(lines) == 1 + len(JPEG_Q) + len(WEBP_Q) + len(AVIF_Q)  # one line per point


def test_bd_rates(anchors_only):
    results, _ = anchors_only
    bd = results["bd_rate"]
    assert bd["reference"] == "jpeg" and bd["range_db"] == [26.0, 38.0]
    jpeg, webp = (results["codecs"][k]["points"] for k in ("jpeg", "webp"))
    expected = metrics.bd_rate([p["bpp"] for p in jpeg], [p["psnr"] for p in jpeg],
                               [p["bpp"] for p in webp], [p["psnr"] for p in webp])
    overlap = bd["codecs"]["webp"]["overlap"]
    assert overlap["percent"] == pytest.approx(expected) and math.isfinite(expected)
    assert overlap["extrapolated"] is False
    fixed = bd["codecs"]["webp"][bd["range_key"]]
    assert fixed["interval_db"] == [26.0, 38.0] and math.isfinite(fixed["percent"])
    assert fixed["extrapolated"] == (min(fixed["coverage_a"], fixed["coverage_b"]) < 1)
    assert "at least 4" in bd["codecs"]["avif"]["overlap"]["error"]
    text = "\n".join(evaluate.bd_lines(results))
    assert "WebP" in text and f"{expected:+.1f}%" in text and "n/a" in text


def test_a_lossless_image_does_not_remove_the_bd_rates():
    """An identical image (PSNR inf) counts as PSNR_CAP_DB in a point's mean, so the curve stays
    finite; the per-image value stays inf. An infinite BD-rate prints n/a, never "+inf%"."""
    rows = [{"image": "flat", "bytes": 10, "bpp": 0.1, "psnr": math.inf, "ms_ssim": 1.0},
            {"image": "photo", "bytes": 30, "bpp": 0.3, "psnr": 30.0, "ms_ssim": 0.9}]
    point = points._point({"quality": 50}, rows, 0.0, 0.0)
    assert point["psnr"] == pytest.approx((evaluate.PSNR_CAP_DB + 30.0) / 2)
    assert point["per_image"][0]["psnr"] == math.inf
    cell = report._bd_cell({"interval_db": [26.0, 38.0], "coverage_a": 1.0, "coverage_b": 0.8,
                            "extrapolated": True, "percent": math.inf})
    assert cell.startswith("n/a") and "inf" not in cell


def test_outputs(anchors_only, tmp_path):
    results, _ = anchors_only
    data = _strict_json(evaluate.to_json(results))
    assert data["format"] == evaluate.RESULTS_FORMAT
    assert data["environment"]["versions"]["Pillow"]
    assert len(data["codecs"]["webp"]["points"]) == len(WEBP_Q)
    png = evaluate.plot(results, tmp_path / "rd.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as im:
        im.verify()
    table = evaluate.table_lines(results)
    assert len(table) == 1 + len(JPEG_Q) + len(WEBP_Q) + len(AVIF_Q)


def test_fastcodec_points(crops):
    import fastcodec

    _, paths = crops
    results = evaluate.evaluate(paths, qualities=FC_Q, anchors=["jpeg"], device="cpu",
                                anchor_qualities={"jpeg": [20, 50, 80, 95]})
    entry = results["codecs"]["fastcodec"]
    assert [p["quality"] for p in entry["points"]] == FC_Q
    assert entry["settings"]["device"] == "cpu"
    for point in entry["points"]:
        codec = fastcodec.Codec(point["quality"], "cpu")
        for record, path in zip(point["per_image"], paths):
            rgb = np.asarray(Image.open(path).convert("RGB"))
            (blob,) = codec.compress(rgb)
            assert record["bytes"] == len(blob)
            assert record["bpp"] == pytest.approx(8 * len(blob) / (rgb.shape[0] * rgb.shape[1]))
            (decoded,) = codec.decompress([blob])
            assert record["psnr"] == pytest.approx(metrics.psnr(rgb, decoded))
    low, high = entry["points"]
    assert high["bpp"] > low["bpp"]
    # two points cannot carry a cubic fit: reported, not raised
    assert "error" in results["bd_rate"]["codecs"]["fastcodec"]["overlap"]


def test_refined_points(crops, tmp_path):
    """``--refine``: the points are those of ``Codec(refine_steps=...)`` and the run records
    the steps; refinement raises the PSNR at the top quality."""
    import fastcodec

    _, paths = crops
    args = evaluate.build_parser().parse_args(
        [str(p) for p in paths] + ["--qualities", "6", "--anchors", "", "--refine", "50",
                                   "--device", "cpu", "--no-plot", "--out", str(tmp_path)])
    assert args.refine == 50 and args.run(args) == 0
    entry = json.loads((tmp_path / "results.json").read_text())["codecs"]["fastcodec"]
    assert entry["settings"]["refine_steps"] == 50
    plain = evaluate.evaluate(paths, qualities=[6.0], anchors=[], device="cpu")
    plain_point = plain["codecs"]["fastcodec"]["points"][0]
    assert plain["codecs"]["fastcodec"]["settings"]["refine_steps"] == 0
    point = entry["points"][0]
    codec = fastcodec.Codec(6, "cpu", refine_steps=50)
    rgb = np.asarray(Image.open(paths[0]).convert("RGB"))
    assert point["per_image"][0]["bytes"] == len(codec.compress(rgb)[0])
    assert point["psnr"] > plain_point["psnr"]


def test_bad_refine_steps_are_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        evaluate.build_parser().parse_args(["--refine", "-1"])
    assert exc.value.code == 2 and "--refine" in capsys.readouterr().err


def test_cli_run_writes_outputs(crops, tmp_path, capsys):
    folder, _ = crops
    out = tmp_path / "out"
    parser = evaluate.build_parser()
    args = parser.parse_args([str(folder), "--anchors-only", "--anchors", "jpeg,webp",
                              "--jpeg-qualities", "10,40,70,95", "--webp-qualities", "10,40,70,90",
                              "--max-images", "1", "--out", str(out), "--json"])
    assert args.run is evaluate.run
    assert args.run(args) == 0
    captured = capsys.readouterr()
    data = _strict_json(captured.out)
    assert data == _strict_json((out / "results.json").read_text())
    assert [i["name"] for i in data["images"]] == ["a.png"]
    assert "fastcodec" not in data["codecs"]
    assert math.isfinite(data["bd_rate"]["codecs"]["webp"]["overlap"]["percent"])
    assert (out / "rd.png").read_bytes()[:4] == b"\x89PNG"
    assert "eval: JPEG q=95" in captured.err  # progress on stderr


def test_configure_parser_on_a_subparser():
    import argparse

    root = argparse.ArgumentParser(prog="fastcodec")
    evaluate.configure_parser(root.add_subparsers(dest="command").add_parser("eval"))
    args = root.parse_args(["eval", "--qualities", "1.5,3", "--device", "cpu"])
    assert args.run is evaluate.run and args.qualities == "1.5,3" and args.inputs == []


@pytest.mark.parametrize("argv, message", [
    (["--anchors", "jpeg,png"], "unknown anchor"),
    (["--anchors-only", "--anchors", ""], "nothing to evaluate"),
    (["--jpeg-qualities", "10,x"], "--jpeg-qualities"),
    (["--anchors-only", "--jpeg-qualities", "10,120"], "integers 0..100"),
    (["--anchors-only", "--avif-speed", "11"], "--avif-speed"),
    (["--anchors-only", "--max-images", "0"], "--max-images"),
    (["/nonexistent/folder", "--anchors-only"], "no such file"),
    (["--qualities", "7", "--anchors", ""], "fastcodec quality 7"),
])
def test_cli_usage_errors(argv, message, capsys, tmp_path):
    args = evaluate.build_parser().parse_args(argv + ["--out", str(tmp_path / "o")])
    assert args.run(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_an_unreadable_image_is_a_usage_error(tmp_path, crops, capsys):
    _, paths = crops
    broken = tmp_path / "broken.png"
    broken.write_bytes(paths[0].read_bytes()[:200])  # truncated
    args = evaluate.build_parser().parse_args([str(broken), "--anchors-only",
                                               "--out", str(tmp_path / "o")])
    assert args.run(args) == 2
    assert f"cannot read {broken}" in capsys.readouterr().err


def test_collect_images(tmp_path, crops):
    _, paths = crops
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(evaluate.EvalError, match="no images"):
        evaluate.collect_images([tmp_path])
    assert evaluate.collect_images([paths[1], paths[0]]) == [paths[1], paths[0]]
    assert evaluate.collect_images([paths[0].parent], max_images=1) == [paths[0]]


def test_legend_names_the_model_and_the_refinement():
    entry = {"label": "fastcodec", "settings": {"model_id": "fcf64-v5", "refine_steps": 50}}
    assert report._legend_label(entry) == "fastcodec (fcf64-v5, refine 50)"
    entry["settings"]["refine_steps"] = 0
    assert report._legend_label(entry) == "fastcodec (fcf64-v5)"
    assert report._legend_label({"label": "JPEG", "settings": {"quality": "x"}}) == "JPEG"
