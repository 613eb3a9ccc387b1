"""``fastcodec compress / decompress / info`` end to end on small generated images: output layout,
existing outputs, failures, interruption and rerun, JSON output; plus the progress/table helpers."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _fastcodec_test_helpers import png_rgb16
from fastcodec import cli
from fastcodec.cli.files import OutputExistsError, current_umask, write_atomic
from fastcodec.container import pack, unpack
from fastcodec.progress import Progress, format_table
from fastcodec.zoo import DEFAULT_MODEL, available_models, load_model


def _image(h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A gradient with noise, uint8 HxWxC (HxW for channels=1)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = (x * 200.0 / w + y * 50.0 / h)[..., None] + np.arange(channels) * 20.0
    img = np.clip(base + rng.normal(0, 8, (h, w, channels)), 0, 255).astype(np.uint8)
    return img[..., 0] if channels == 1 else img


def _save(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


@pytest.fixture
def photos(tmp_path) -> Path:
    """photos/: a.png 40x24, d.jpg 24x40, sub/b.png 33x17, sub/deeper/c.png gray, notes.txt."""
    root = tmp_path / "photos"
    _save(root / "a.png", _image(24, 40, seed=1))
    _save(root / "d.jpg", _image(40, 24, seed=2))
    _save(root / "sub" / "b.png", _image(17, 33, seed=3))
    _save(root / "sub" / "deeper" / "c.png", _image(24, 40, channels=1, seed=4))
    (root / "notes.txt").write_text("not an image\n")
    return root


EXPECTED = {"a.fcc": (24, 40, "rgb"), "d.fcc": (40, 24, "rgb"), "sub/b.fcc": (17, 33, "rgb"),
            "sub/deeper/c.fcc": (24, 40, "gray")}


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def files_under(folder: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under ``folder`` (hidden temporaries included)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_roundtrip_keeps_relative_paths_sizes_and_layouts(photos, tmp_path, capsys):
    enc, dec = tmp_path / "enc", tmp_path / "dec"
    rc, out, err = run(capsys, "compress", photos, "-o", enc, "-q", "3", "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["ok"] and doc["command"] == "compress" and doc["quality"] == 3.0
    assert sorted(files_under(enc)) == sorted(EXPECTED)  # notes.txt silently skipped
    assert "notes.txt" not in out + err
    by_output = {Path(r["output"]).relative_to(enc).as_posix(): r for r in doc["files"]}
    for rel, (h, w, layout) in EXPECTED.items():
        blob = (enc / rel).read_bytes()
        header, _ = unpack(blob)
        assert (header.height, header.width, header.layout) == (h, w, layout)
        assert header.quality == 3.0
        rec = by_output[rel]
        assert rec["status"] == "ok" and rec["output_bytes"] == len(blob)
        assert rec["bpp"] == pytest.approx(8 * len(blob) / (h * w))
    s = doc["summary"]
    assert s["files"] == 4 and s["failed"] == s["skipped"] == 0
    assert s["output_bytes"] == sum(len(b) for b in files_under(enc).values())

    rc, out, err = run(capsys, "decompress", enc, "-o", dec)
    assert rc == 0, err
    assert "decompressed" in out and "MP/s" in out and "bpp" in out  # the summary table
    assert sorted(files_under(dec)) == sorted(k.replace(".fcc", ".png") for k in EXPECTED)
    for rel, (h, w, layout) in EXPECTED.items():
        with Image.open(dec / rel.replace(".fcc", ".png")) as im:
            assert im.size == (w, h) and im.mode == ("L" if layout == "gray" else "RGB")
    with Image.open(dec / "a.png") as im:
        decoded = np.asarray(im).astype(np.float64)
    mse = np.mean((decoded - _image(24, 40, seed=1)) ** 2)
    assert 10 * np.log10(255**2 / mse) > 18  # a picture of the input, not noise


def test_other_output_formats(photos, tmp_path, capsys):
    enc = tmp_path / "enc"
    rc, _, err = run(capsys, "compress", photos / "sub", "-o", enc, "-j", "1", "--batch-size", "1")
    assert rc == 0, err
    for fmt, ext in (("bmp", ".bmp"), ("tiff", ".tiff"), ("ppm", ".ppm")):
        out_dir = tmp_path / fmt
        rc, _, err = run(capsys, "decompress", enc, "-o", out_dir, "--format", fmt)
        assert rc == 0, err
        with Image.open(out_dir / ("b" + ext)) as im:
            assert im.size == (33, 17) and im.mode == "RGB"
        with Image.open(out_dir / "deeper" / ("c" + ext)) as im:
            assert im.size == (40, 24) and im.mode == "L"


def test_file_inputs_are_written_under_their_names(photos, tmp_path, capsys):
    out_dir = tmp_path / "out"
    rc, _, err = run(capsys, "compress", photos / "a.png", photos / "sub" / "b.png",
                     photos / "a.png", "-o", out_dir)  # the same file twice counts once
    assert rc == 0, err
    assert sorted(files_under(out_dir)) == ["a.fcc", "b.fcc"]


def test_name_collisions_are_usage_errors(photos, tmp_path, capsys):
    other = _save(tmp_path / "other" / "a.png", _image(16, 16))
    out_dir = tmp_path / "out"
    rc, _, err = run(capsys, "compress", photos / "a.png", other, "-o", out_dir)
    assert rc == 2 and "would both be written to" in err and str(other) in err
    _save(photos / "sub" / "b.jpg", _image(17, 33))  # b.png and b.jpg -> sub/b.fcc
    rc, _, err = run(capsys, "compress", photos, "-o", out_dir)
    assert rc == 2 and "b.jpg" in err and "b.png" in err
    assert not out_dir.exists()  # nothing written


def test_usage_errors(photos, tmp_path, capsys):
    rc, _, err = run(capsys, "compress", tmp_path / "missing", "-o", tmp_path / "o")
    assert rc == 2 and "no such file or folder" in err
    (tmp_path / "file").write_text("x")
    rc, _, err = run(capsys, "compress", photos, "-o", tmp_path / "file")
    assert rc == 2 and "is a file" in err
    for bad in (["compress", photos, "-o", tmp_path / "o", "-q", "7"],
                ["compress", photos, "-o", tmp_path / "o", "--force", "--skip-existing"],
                ["decompress", photos, "-o", tmp_path / "o", "--format", "gif"],
                ["compress", photos]):
        with pytest.raises(SystemExit) as exc:
            cli.main([str(a) for a in bad])
        assert exc.value.code == 2
    assert not (tmp_path / "o").exists()
    rc, _, err = run(capsys, "compress", photos, "-o", tmp_path / "o", "--device", "nodevice")
    assert rc == 2 and "cannot set up the codec" in err


def test_existing_outputs_force_and_skip_existing(photos, tmp_path, capsys):
    enc = tmp_path / "enc"
    assert run(capsys, "compress", photos, "-o", enc, "-q", "2")[0] == 0
    before = files_under(enc)
    (enc / "sub" / "b.fcc").unlink()

    rc, _, err = run(capsys, "compress", photos, "-o", enc, "-q", "5")
    assert rc == 1 and f"{enc / 'a.fcc'} exists" in err and "--force" in err
    assert files_under(enc) == {k: v for k, v in before.items() if k != "sub/b.fcc"}

    rc, out, err = run(capsys, "compress", photos, "-o", enc, "-q", "2", "--skip-existing",
                       "--json")
    assert rc == 0, err
    status = {Path(r["input"]).name: r["status"] for r in json.loads(out)["files"]}
    assert status == {"a.png": "skipped", "d.jpg": "skipped", "b.png": "ok", "c.png": "skipped"}
    assert files_under(enc) == before  # same quality: the same bytes again

    rc, _, err = run(capsys, "compress", photos, "-o", enc, "-q", "5", "--force")
    assert rc == 0, err
    after = files_under(enc)
    assert sorted(after) == sorted(before)
    assert all(unpack(b)[0].quality == 5.0 for b in after.values())


def test_keep_going_and_stop_at_first_failure(tmp_path, capsys):
    src = tmp_path / "mixed"
    (src / "bad.png").parent.mkdir(parents=True)
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    _save(src / "good.png", _image(20, 30))
    (src / "readme.md").write_text("# not an image")
    _save(src / "rgba.png", np.dstack([_image(12, 12), np.full((12, 12), 128, np.uint8)]))

    rc, _, err = run(capsys, "compress", src, "-o", tmp_path / "stop")
    assert rc == 1 and "bad.png" in err
    assert not (tmp_path / "stop").exists()  # bad.png comes first: nothing after it runs

    rc, out, err = run(capsys, "compress", src, "-o", tmp_path / "go", "--keep-going", "--json")
    assert rc == 1
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 2 and "bad.png" in errors[0] and "rgba.png" in errors[1]
    assert "--convert" in errors[1]
    assert "readme.md" not in err
    assert files_under(tmp_path / "go").keys() == {"good.fcc"}
    doc = json.loads(out)
    assert not doc["ok"] and doc["summary"]["failed"] == 2 and doc["summary"]["files"] == 1

    rc, _, err = run(capsys, "compress", src / "rgba.png", src / "readme.md", "-o",
                     tmp_path / "conv", "--convert", "--keep-going")
    assert rc == 1 and "readme.md" in err  # an explicitly named non-image is reported
    assert files_under(tmp_path / "conv").keys() == {"rgba.fcc"}


def test_damaged_files_give_one_line_errors(photos, tmp_path, capsys):
    enc = tmp_path / "enc"
    assert run(capsys, "compress", photos / "a.png", photos / "d.jpg", "-o", enc)[0] == 0
    blob = (enc / "a.fcc").read_bytes()
    (enc / "a.fcc").write_bytes(blob[: len(blob) // 2])  # truncated
    (enc / "png.fcc").write_bytes((photos / "a.png").read_bytes())  # not a .fcc at all
    flipped = bytearray((enc / "d.fcc").read_bytes())
    flipped[-3] ^= 0x10
    (enc / "flip.fcc").write_bytes(bytes(flipped))
    good = (enc / "d.fcc").read_bytes()
    header, streams = unpack(good)  # a valid file of a model that is not installed
    (enc / "e.fcc").write_bytes(pack(
        model_id="other-v9", weights_hash=header.weights_hash, quality=header.quality,
        height=header.height, width=header.width, layout=header.layout,
        latent_shape=header.latent_shape, streams=streams))

    rc, _, err = run(capsys, "decompress", enc, "-o", tmp_path / "dec", "--keep-going")
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("fastcodec decompress: error: ")
                                   for line in lines)
    assert {Path(line.split(": ")[2]).name for line in lines} == {
        "a.fcc", "e.fcc", "flip.fcc", "png.fcc"}
    assert "other-v9" in lines[1] and "not installed" in lines[1]
    assert files_under(tmp_path / "dec").keys() == {"d.png"}

    rc, out, err = run(capsys, "info", enc / "a.fcc", enc / "d.fcc", enc / "png.fcc")
    assert rc == 1 and len(err.strip().splitlines()) == 2 and "d.fcc" in out
    assert (enc / "d.fcc").read_bytes() == good


def test_info_text_and_json(photos, tmp_path, capsys):
    enc = tmp_path / "enc"
    assert run(capsys, "compress", photos, "-o", enc, "-q", "4.6")[0] == 0  # snaps to 4.5
    rc, out, err = run(capsys, "info", enc / "sub" / "deeper" / "c.fcc")
    assert rc == 0, err
    m = load_model(DEFAULT_MODEL).model.M  # latent channels
    for text in ("model", DEFAULT_MODEL, "quality   4.5", "size      40x24 (gray)",
                 f"latent    {m}x2x3", "streams   1", "bytes", "bpp"):
        assert text in out
    files = [enc / rel for rel in EXPECTED]
    rc, out, _ = run(capsys, "info", *files, "--json")
    assert rc == 0
    docs = json.loads(out)
    assert [d["file"] for d in docs] == [str(f) for f in files]
    for doc, (h, w, layout) in zip(docs, EXPECTED.values()):
        assert (doc["height"], doc["width"], doc["layout"]) == (h, w, layout)
        assert doc["quality"] == 4.5 and doc["latent_shape"] == [m, -(-h // 16), -(-w // 16)]
        assert doc["bytes"] == (files[docs.index(doc)]).stat().st_size
        assert 0 < sum(doc["stream_lengths"]) < doc["bytes"]
        assert doc["bpp"] == pytest.approx(8 * doc["bytes"] / (h * w))


def _many(folder: Path, n: int) -> Path:
    for i in range(n):
        _save(folder / f"img{i:02d}.png", _image(16 + i, 24, seed=i))
    return folder


def test_interrupted_run_leaves_complete_outputs_and_resumes(tmp_path, capsys, monkeypatch):
    import fastcodec.api

    src = _many(tmp_path / "src", 10)
    ref, out_dir = tmp_path / "ref", tmp_path / "out"
    assert run(capsys, "compress", src, "-o", ref, "--batch-size", "1")[0] == 0

    original = fastcodec.api.Codec.compress
    calls = []

    def interrupted(self, images, **kw):
        calls.append(len(images))
        if len(calls) == 2:  # Ctrl-C while the second chunk is coded
            raise KeyboardInterrupt
        return original(self, images, **kw)

    monkeypatch.setattr(fastcodec.api.Codec, "compress", interrupted)
    rc, _, err = run(capsys, "compress", src, "-o", out_dir, "--batch-size", "1")
    assert rc == 130 and "--skip-existing" in err
    partial = files_under(out_dir)
    assert len(partial) == calls[0] == 4  # chunks of 4 x batch size; all written, none torn
    reference = files_under(ref)
    assert all(reference[name] == blob for name, blob in partial.items())
    monkeypatch.setattr(fastcodec.api.Codec, "compress", original)

    rc, out, err = run(capsys, "compress", src, "-o", out_dir, "--batch-size", "1",
                       "--skip-existing", "--json")
    assert rc == 0, err
    summary = json.loads(out)["summary"]
    assert summary["skipped"] == 4 and summary["files"] == 6
    assert files_under(out_dir) == files_under(ref)  # identical bytes, no temporaries


def test_killed_subprocess_then_skip_existing(tmp_path, capsys):
    """SIGTERM to a real ``fastcodec compress`` process while it codes its second chunk."""
    src = _many(tmp_path / "src", 8)
    out_dir = tmp_path / "out"
    script = (
        "import sys, time, fastcodec.api, fastcodec.cli as cli\n"
        "orig = fastcodec.api.Codec.compress\n"
        "calls = []\n"
        "def slow(self, images, **kw):\n"
        "    calls.append(1)\n"
        "    if len(calls) > 1: time.sleep(120)\n"
        "    return orig(self, images, **kw)\n"
        "fastcodec.api.Codec.compress = slow\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, "compress", str(src), "-o",
                             str(out_dir), "--batch-size", "1", "--json"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 120
        while len(list(out_dir.glob("*.fcc"))) < 4 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.startswith("fastcodec compress: interrupted after 4 files")
    assert "--skip-existing" in err
    doc = json.loads(out)  # stdout holds only the JSON document
    assert doc["interrupted"] and not doc["ok"]
    assert [r["status"] for r in doc["files"]] == ["ok"] * 4 + ["pending"] * 4
    assert sorted(files_under(out_dir)) == [f"img{i:02d}.fcc" for i in range(4)]
    for blob in files_under(out_dir).values():
        unpack(blob)  # complete and valid

    rc, _, err = run(capsys, "compress", src, "-o", out_dir, "--batch-size", "1",
                     "--skip-existing")
    assert rc == 0, err
    ref = tmp_path / "ref"
    assert run(capsys, "compress", src, "-o", ref, "--batch-size", "1")[0] == 0
    assert files_under(out_dir) == files_under(ref)


def test_console_script_and_python_m(photos, tmp_path, capsys):
    """The installed ``fastcodec`` script and ``python -m fastcodec`` (``info`` needs no torch)."""
    assert run(capsys, "compress", photos / "a.png", "-o", tmp_path)[0] == 0
    (tmp_path / "bad.fcc").write_bytes(b"FCC" * 20)
    exe = Path(sys.executable).with_name("fastcodec")
    if not exe.exists():
        pytest.skip(f"no console script next to {sys.executable}")
    done = subprocess.run([str(exe), "info", "a.fcc", "--json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (doc,) = json.loads(done.stdout)
    assert doc["file"] == "a.fcc" and (doc["width"], doc["height"]) == (40, 24)
    done = subprocess.run([sys.executable, "-m", "fastcodec", "info", "bad.fcc", "a.fcc"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.startswith("fastcodec info: error: bad.fcc: ")
    assert len(done.stderr.splitlines()) == 1 and "40x24 (rgb)" in done.stdout


def test_version(capsys):
    import fastcodec

    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"fastcodec {fastcodec.__version__}"


def test_eval_bench_and_train_are_wired(capsys, monkeypatch):
    for command, option in (("eval", "--anchors"), ("bench", "--compare")):
        with pytest.raises(SystemExit) as exc:
            cli.build_parser().parse_args([command, "--help"])
        assert exc.value.code == 0 and option in capsys.readouterr().out
    import fastcodec.train

    seen = []
    monkeypatch.setattr(fastcodec.train, "main", lambda argv: seen.append(argv) or 7)
    assert cli.main(["train", "--steps", "3", "--help"]) == 7
    assert seen == [["--steps", "3", "--help"]]


def test_write_atomic(tmp_path, monkeypatch):
    target = tmp_path / "deep" / "x.bin"
    write_atomic(target, b"one", overwrite=False)
    assert target.read_bytes() == b"one"
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~current_umask())
    with pytest.raises(OutputExistsError, match="x.bin exists"):
        write_atomic(target, b"two", overwrite=False)
    write_atomic(target, b"three", overwrite=True)
    assert target.read_bytes() == b"three"

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        write_atomic(tmp_path / "deep" / "y.bin", b"four", overwrite=False)
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["x.bin"]


def test_progress_draws_only_on_a_tty():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    quiet = io.StringIO()
    with Progress(3, label="compress", stream=quiet) as bar:
        for _ in range(3):
            bar.update(megapixels=0.5)
        bar.message("a message")
    assert quiet.getvalue() == "a message\n"

    tty = Tty()
    with Progress(2, label="compress", stream=tty, interval=0) as bar:
        bar.update(megapixels=1.0)
        assert "[############............] 1/2" in tty.getvalue() and "MP/s" in tty.getvalue()
        assert "ETA" in tty.getvalue()
        bar.update(megapixels=1.0)
    last = tty.getvalue().rsplit("\r", 1)[1]
    assert last.startswith("\x1b[Kcompress [########################] 2/2") and "ETA" not in last
    assert last.endswith("\n")


def test_format_table():
    text = format_table(["", "files", "bpp"], [["done", 12, "0.512"], ["failed", 3, None]])
    assert text.splitlines() == ["        files    bpp", "done       12  0.512",
                                 "failed      3"]
    with pytest.raises(ValueError, match="2 cells"):
        format_table(["a", "b", "c"], [[1, 2]])


def test_bfloat16_transforms_round_trip_and_float16_needs_cuda(photos, tmp_path, capsys):
    """--dtype bfloat16 on CPU writes ordinary .fcc files (a float32 run decodes them)."""
    enc, dec = tmp_path / "enc", tmp_path / "dec"
    assert run(capsys, "compress", photos, "-o", enc, "--dtype", "bfloat16")[0] == 0
    assert run(capsys, "decompress", enc, "-o", dec, "--dtype", "float32")[0] == 0
    for rel, (h, w, _) in EXPECTED.items():
        with Image.open((dec / rel).with_suffix(".png")) as im:
            assert im.size == (w, h)
    rc, _, err = run(capsys, "compress", photos, "-o", tmp_path / "x", "--dtype", "float16",
                     "--device", "cpu")
    assert rc == 2 and "float16 needs a CUDA device" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_an_unavailable_or_malformed_device_is_a_usage_error(photos, tmp_path, capsys):
    rc, _, err = run(capsys, "compress", photos, "-o", tmp_path / "x", "--device", "cuda")
    assert rc == 2 and "device 'cuda' is not available" in err and "Traceback" not in err
    rc, _, err = run(capsys, "compress", photos, "-o", tmp_path / "x", "--device", "gpu0")
    assert rc == 2 and "not a torch device: 'gpu0'" in err
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_inputs_without_any_image_are_a_usage_error(photos, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    for command in ("compress", "decompress"):
        rc, _, err = run(capsys, command, empty, "-o", tmp_path / command)
        assert rc == 2 and f"no input files found in {empty}" in err
    # an empty folder next to real inputs: a warning, and the others are coded
    rc, _, err = run(capsys, "compress", empty, photos, "-o", tmp_path / "out")
    assert rc == 0 and "warning: no input files found" in err
    assert len(list((tmp_path / "out").rglob("*.fcc"))) == 4


def test_a_quality_off_the_grid_is_snapped_with_a_note(photos, tmp_path, capsys):
    rc, _, err = run(capsys, "compress", photos / "a.png", "-o", tmp_path / "o", "-q", "4.1")
    assert rc == 0 and "quality 4.1 is not on the 0.25 grid; using 4" in err
    assert unpack((tmp_path / "o" / "a.fcc").read_bytes())[0].quality == 4.0
    rc, _, err = run(capsys, "compress", photos / "a.png", "-o", tmp_path / "p", "-q", "4.25")
    assert rc == 0 and "grid" not in err


def test_compress_and_demo_code_with_the_model_asked_for(photos, tmp_path, capsys):
    other = next(m for m in reversed(available_models()) if m != DEFAULT_MODEL)
    rc, out, _ = run(capsys, "compress", photos / "a.png", "-o", tmp_path / "o", "--model",
                     other, "--json")
    assert rc == 0 and json.loads(out)["model"] == other
    assert unpack((tmp_path / "o" / "a.fcc").read_bytes())[0].model_id == other
    assert run(capsys, "decompress", tmp_path / "o", "-o", tmp_path / "d")[0] == 0
    rc, out, _ = run(capsys, "demo", photos / "a.png", "-o", tmp_path / "demo", "-q", "3",
                     "--model", other)
    assert rc == 0 and f"model {other}" in out
    rc, _, err = run(capsys, "compress", photos / "a.png", "-o", tmp_path / "x", "--model", "nope")
    assert rc == 2 and "unknown model 'nope'" in err


def test_exif_orientation_is_applied(tmp_path, capsys):
    """A phone photo stored 48x32 with Orientation 6 (shown 32x48) comes back as shown."""
    stored = _image(32, 48, seed=5)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    src = tmp_path / "in" / "phone.jpg"
    src.parent.mkdir()
    Image.fromarray(stored).save(src, exif=exif, quality=95)
    assert run(capsys, "compress", src, "-o", tmp_path / "enc")[0] == 0
    assert unpack((tmp_path / "enc" / "phone.fcc").read_bytes())[0].height == 48
    assert run(capsys, "decompress", tmp_path / "enc", "-o", tmp_path / "dec")[0] == 0
    back = np.asarray(Image.open(tmp_path / "dec" / "phone.png"))
    shown = np.rot90(np.asarray(Image.open(src)), k=-1)  # what viewers show
    assert back.shape == shown.shape == (48, 32, 3)
    assert np.abs(back.astype(int) - shown).mean() < 12  # the same picture, not a rotated one


def test_16_bit_rgb_files_need_convert(tmp_path, capsys):
    """Pillow loads 16-bit RGB as mode RGB (high bytes): refused unless --convert, like 16-bit
    gray; the API refuses such an image too while it is not loaded."""
    import fastcodec

    samples = np.random.default_rng(6).integers(0, 65536, (20, 30, 3)).astype(np.uint16)
    src = png_rgb16(tmp_path / "in" / "deep.png", samples)
    rc, _, err = run(capsys, "compress", src, "-o", tmp_path / "enc")
    assert rc == 1 and "16-bit RGB" in err and "--convert" in err
    assert run(capsys, "compress", src, "-o", tmp_path / "enc", "--convert")[0] == 0
    with Image.open(src) as im, pytest.raises(ValueError, match="16-bit RGB.*convert=True"):
        fastcodec.compress(im)
    with Image.open(src) as im:
        np.testing.assert_array_equal(np.asarray(im), samples >> 8)  # what --convert codes


def test_max_pixels_option_reads_files_over_the_default_cap(photos, tmp_path, capsys):
    enc = tmp_path / "enc"
    assert run(capsys, "compress", photos / "a.png", "-o", enc)[0] == 0  # 40x24 = 960 px
    for cmd in (["info", enc / "a.fcc"], ["decompress", enc / "a.fcc", "-o", tmp_path / "d"]):
        rc, _, err = run(capsys, *cmd, "--max-pixels", "959")
        assert rc == 1 and "pass --max-pixels 960 or more" in err, err
        assert run(capsys, *cmd, "--max-pixels", "960", "--force" if cmd[0] == "decompress"
                   else "--json")[0] == 0
