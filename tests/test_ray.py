"""fastcodec.ray on a local Ray instance (2 CPUs): outputs byte-identical to the single-process
API, per-image failures in the manifest, interrupted runs that resume without loss or
duplicates. Skipped when Ray Data is not installed (``pip install "fastcodec[ray]"``)."""

from __future__ import annotations

import argparse
import json
import os
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pa = pytest.importorskip("pyarrow")
PIL_Image = pytest.importorskip("PIL.Image")

import fastcodec  # noqa: E402
from fastcodec import ray as fray  # noqa: E402
from fastcodec import storage  # noqa: E402
from fastcodec.ray.command import _cli_existing  # noqa: E402
from fastcodec.ray.jobs import _Job, _run  # noqa: E402
from fastcodec.ray.workers import CompressWorker  # noqa: E402
from fastcodec.samples import sample_paths  # noqa: E402
from fastcodec.zoo import DEFAULT_MODEL  # noqa: E402

# Ray's DataContext warns about its own deprecated fields when it is read
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")

QUALITY = 3.5
NUM_COLOR = 30


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    # Ray workers start in the driver's working directory and put it first on sys.path: start
    # them outside the checkout, whose fastcodec/ has no compiled modules in a non-editable
    # install (as in CI), so that they import the installed package.
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("ray_cwd"))
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 object_store_memory=150 * 1024**2)
    finally:
        os.chdir(cwd)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A folder of small crops of the bundled sample (two sub-folders, odd sizes, one gray)
    plus one corrupt file; returns (root, {relative key: PIL image}, corrupt key)."""
    root = tmp_path_factory.mktemp("ray_src")
    with PIL_Image.open(sample_paths()[0]) as im:
        sample = np.asarray(im.convert("RGB"))
    out = {}
    for i in range(NUM_COLOR):
        h, w = (32, 48) if i % 7 else (17, 33)  # some sizes are not multiples of 16
        y, x = 13 * i % (sample.shape[0] - h), 37 * i % (sample.shape[1] - w)
        key = f"{'ab'[i % 2]}/img{i:02d}.png" if i % 3 else f"img{i:02d}.png"
        out[key] = PIL_Image.fromarray(sample[y:y + h, x:x + w])
    out["gray.png"] = PIL_Image.fromarray(sample[100:132, 200:248, 1])  # mode "L"
    for key, image in out.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        image.save(root / key)
    corrupt = "b/corrupt.png"
    (root / corrupt).write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    return root, out, corrupt


@pytest.fixture(scope="module")
def reference(images):
    """The single-process API's blob of every image (one call per image)."""
    _, imgs, _ = images
    codec = fastcodec.Codec(QUALITY)
    return {key: codec.compress(image)[0] for key, image in imgs.items()}


def _fcc(key: str) -> str:
    return key.rsplit(".", 1)[0] + ".fcc"


def _files(root: Path) -> set:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _settled_files(root: Path, quiet: float = 2.0, limit: float = 60.0) -> set:
    """``_files(root)`` once nothing has changed there for ``quiet`` seconds: after the driver
    stops, Ray lets each worker finish the batch in hand (its actors are released, not killed),
    so outputs can still land for a moment."""
    last, since, start = _files(root), time.monotonic(), time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() - start < limit, "workers kept writing after the run stopped"
        time.sleep(0.2)
        now = _files(root)
        if now != last:
            last, since = now, time.monotonic()
    return last


# ------------------------------------------------------------------------ no cluster needed


def test_write_atomic_both_strategies(tmp_path, monkeypatch):
    fs = fray.pafs.LocalFileSystem()
    target = (tmp_path / "x" / "y.fcc").as_posix()
    fray.write_atomic(fs, target, b"first")
    fray.write_atomic(fs, target, b"second")  # replaces
    assert Path(target).read_bytes() == b"second"
    assert _files(tmp_path) == {"x/y.fcc"}  # no temporary left behind
    monkeypatch.setattr(storage, "_RENAME_ATOMIC", ())  # object-store path: one direct upload
    fray.write_atomic(fs, target, b"third")
    assert Path(target).read_bytes() == b"third" and _files(tmp_path) == {"x/y.fcc"}


def test_keys_and_listing(tmp_path):
    assert storage.key_from_path("/data/set/a/b.png", "/data/set") == "a/b.png"
    assert storage.key_from_path("bucket/a/b.png", None) == "bucket/a/b.png"
    with pytest.raises(ValueError, match="not under"):
        storage.key_from_path("/other/a.png", "/data/set")
    with pytest.raises(ValueError, match="inside the destination"):
        storage.key_from_path("/data/set/../../etc/x.png", "/data/set")
    for name in ("a.png", "sub/b.JPG", ".hidden.png", "sub/.c.png.1234.fcctmp", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    exts = fray.image_extensions()
    assert {".png", ".jpg", ".webp"} <= set(exts) and ".txt" not in exts
    _, rows = storage.list_sources(str(tmp_path), None, exts)
    assert [r["key"] for r in rows] == ["a.png", "sub/b.JPG"]
    (tmp_path / "a.jpg").write_bytes(b"")
    _, rows = storage.list_sources(str(tmp_path), None, exts)
    with pytest.raises(ValueError, match="would both be written"):
        storage.check_output_collisions(rows, ".fcc")
    with pytest.raises(FileNotFoundError):
        storage.list_sources(str(tmp_path / "missing"), None, exts)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="quality"):
        fray.compress_dataset(str(tmp_path), str(tmp_path / "o"), quality=9)
    with pytest.raises(ValueError, match="batch_size"):
        fray.compress_dataset(str(tmp_path), str(tmp_path / "o"), batch_size=0)
    with pytest.raises(ValueError, match="manifest"):
        fray.compress_dataset(str(tmp_path), str(tmp_path / "o"), manifest="m.csv")
    with pytest.raises(ValueError, match="existing"):
        fray.compress_dataset(str(tmp_path), str(tmp_path / "o"), existing="skip")
    with pytest.raises(ValueError, match="refine_steps"):
        fray.compress_dataset(str(tmp_path), str(tmp_path / "o"), refine_steps=-1)
    # the command line's rules for existing outputs
    ns = argparse.Namespace
    assert _cli_existing(ns(force=True, skip_existing=False)) == "overwrite"
    assert _cli_existing(ns(force=False, skip_existing=True)) == "verify"
    assert _cli_existing(ns(force=False, skip_existing=False)) == "error"
    assert fray.run_cli(ns(inputs=[], out=None)) == 2


def test_run_writes_sorted_manifest_and_stops_when_failing_fast(tmp_path):
    """The driver loop on a stand-in for the mapped Dataset (no cluster)."""
    consumed = []

    def table(names, status):
        n = len(names)
        return pa.table({
            "source": names, "output": [f"{x}.fcc" for x in names], "status": [status] * n,
            "bytes": [10] * n, "bpp": [1.0] * n, "crc32": [1] * n, "height": [4] * n,
            "width": [4] * n, "quality": [4.0] * n, "error": [None] * n,
        })

    class Mapped:
        def iter_batches(self, **kw):
            for t in (table(["d", "c"], "ok"), table(["b"], "failed"), table(["a"], "ok")):
                consumed.append(t)
                yield t

    job = _Job(ds=None, total=4, dest=fray.Location.resolve(tmp_path),
               manifest="_manifest.jsonl", batch_size=2, num_gpus=0, num_cpus=1, pool=1,
               worker_kwargs={})
    job.mapped = lambda cls, kwargs: Mapped()
    seen = []
    full = _run(job, None, {}, started=0.0, progress=lambda d, t: seen.append((d, t)),
                fail_fast=False)
    assert (full.total, full.ok, full.failed, full.stopped) == (4, 3, 1, False)
    assert seen == [(2, 4), (3, 4), (4, 4)] and full.failures == [("b", None)]
    assert [r["source"] for r in fray.read_manifest(full.manifest)] == ["a", "b", "c", "d"]
    consumed.clear()
    stop = _run(job, None, {}, started=0.0, progress=None, fail_fast=True)
    assert (stop.total, stop.failed, stop.stopped, len(consumed)) == (3, 1, True, 2)
    assert [r["source"] for r in fray.read_manifest(stop.manifest)] == ["b", "c", "d"]


def test_worker_on_dataset_rows(images, reference, tmp_path):
    """The callable class itself, in this process, on the batches a Dataset source gives:
    decoded arrays (read_images) and file bytes (read_binary_files), with ``relative_to``."""
    src, imgs, corrupt = images
    keys = sorted(imgs)[:3]
    worker = CompressWorker(
        sources=None, dest=fray.Location.resolve(tmp_path), relative_to="/data/set",
        path_column="path", io_threads=2, quality=QUALITY, model=DEFAULT_MODEL, device="cpu",
        num_gpus=0, threads=1, batch_size=4, transform_dtype=None, existing="verify",
        convert=False)
    arrays = np.empty(len(keys) + 1, dtype=object)
    arrays[:] = [np.asarray(imgs[k]) for k in keys] + [np.zeros((8, 8, 3), np.uint8)]
    paths = np.array([f"/data/set/{k}" for k in keys] + ["/elsewhere/x.png"], dtype=object)
    by_source = {r["source"]: r for r in worker({"image": arrays, "path": paths}).to_pylist()}
    assert [by_source[p]["status"] for p in paths] == ["ok", "ok", "ok", "failed"]
    assert "not under" in by_source["/elsewhere/x.png"]["error"]
    for key in keys:
        assert (tmp_path / _fcc(key)).read_bytes() == reference[key]
    files = {"img00.png": (src / "img00.png").read_bytes(), corrupt: (src / corrupt).read_bytes()}
    table = worker({"bytes": np.array(list(files.values()), dtype=object),
                    "path": np.array([f"/data/set/{k}" for k in files], dtype=object)})
    by_source = {r["source"]: r for r in table.to_pylist()}
    assert by_source["/data/set/img00.png"]["status"] == "ok"
    assert by_source[f"/data/set/{corrupt}"]["status"] == "failed"
    assert (tmp_path / "img00.fcc").read_bytes() == reference["img00.png"]
    again = worker({"image": arrays[:1], "path": paths[:1]}).to_pylist()
    assert again[0]["status"] == "skipped" and again[0]["crc32"] == zlib.crc32(reference[keys[0]])
    with pytest.raises(ValueError, match="'path' column"):
        worker({"image": arrays[:1]})
    worker.existing = "error"  # as the command line without --force / --skip-existing
    refused = worker({"image": arrays[:1], "path": paths[:1]}).to_pylist()[0]
    assert refused["status"] == "failed" and "exists" in refused["error"]
    assert (tmp_path / _fcc(keys[0])).read_bytes() == reference[keys[0]]


def test_worker_refines_as_the_api_does(images, tmp_path):
    """``refine_steps`` reaches the workers' codec: the same bytes as ``fastcodec.compress``
    with it at the same torch thread count, other bytes than without."""
    import torch

    _, imgs, _ = images
    key = sorted(imgs)[1]
    threads = torch.get_num_threads()
    try:
        worker = CompressWorker(
            sources=None, dest=fray.Location.resolve(tmp_path), relative_to=None,
            path_column="path", io_threads=1, quality=6.0, model=DEFAULT_MODEL,
            device="cpu", num_gpus=0, threads=1, batch_size=4, transform_dtype=None,
            existing="overwrite", convert=False, refine_steps=30)
        arrays = np.empty(1, dtype=object)
        arrays[:] = [np.asarray(imgs[key])]
        row, = worker({"image": arrays, "path": np.array([key], dtype=object)}).to_pylist()
        assert row["status"] == "ok"
        # the worker runs torch on its one thread: refined bytes follow the summation order
        assert torch.get_num_threads() == 1
        expected = fastcodec.compress(np.asarray(imgs[key]), 6.0, refine_steps=30)[0]
    finally:
        torch.set_num_threads(threads)
    assert (tmp_path / _fcc(key)).read_bytes() == expected
    assert expected != fastcodec.compress(np.asarray(imgs[key]), 6.0)[0]


def test_worker_reads_files_as_the_command_line_does(images, reference, tmp_path):
    """A failure alone in its batch is a failed row, not a failed job; files are read as the
    CLI reads them (EXIF orientation, 16-bit RGB needs convert); Dataset gray arrays [1, H, W]
    (read_images(mode=None)) are gray images."""
    from PIL import Image

    from _fastcodec_test_helpers import png_rgb16

    src, imgs, corrupt = images
    worker = CompressWorker(
        sources=None, dest=fray.Location.resolve(tmp_path / "out"), relative_to="/d",
        path_column="path", io_threads=1, quality=QUALITY, model=DEFAULT_MODEL, device="cpu",
        num_gpus=0, threads=1, batch_size=1, transform_dtype=None, existing="verify",
        convert=False)

    def run(column: str, values: list, names: list) -> list:
        return worker({column: np.array(values + [None], dtype=object)[:-1],
                       "path": np.array([f"/d/{n}" for n in names], dtype=object)}).to_pylist()

    alone, = run("bytes", [(src / corrupt).read_bytes()], ["bad.png"])
    assert alone["status"] == "failed" and "not a readable image" in alone["error"]

    gray, = run("image", [np.asarray(imgs["gray.png"])[None]], ["gray.png"])
    assert gray["status"] == "ok"
    assert (tmp_path / "out" / "gray.fcc").read_bytes() == reference["gray.png"]

    deep = png_rgb16(tmp_path / "deep.png", np.full((16, 24, 3), 40000, np.uint16))
    refused, = run("bytes", [deep.read_bytes()], ["deep.png"])
    assert refused["status"] == "failed" and "16-bit RGB" in refused["error"]

    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated by 90 degrees
    Image.fromarray(np.asarray(imgs["img00.png"])).save(tmp_path / "phone.jpg", exif=exif)
    turned, = run("bytes", [(tmp_path / "phone.jpg").read_bytes()], ["phone.jpg"])
    assert turned["status"] == "ok"
    w, h = imgs["img00.png"].size
    assert fastcodec.info((tmp_path / "out" / "phone.fcc").read_bytes())["height"] == w


def test_listing_leaves_out_a_destination_inside_the_source(tmp_path):
    for name in ("a.png", "out/x.png", "outside/b.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    dest = fray.Location.resolve(tmp_path / "out")
    _, rows = storage.list_sources(str(tmp_path), None, fray.image_extensions(), skip=dest)
    assert [r["key"] for r in rows] == ["a.png", "outside/b.png"]


@pytest.mark.parametrize("word, address", [
    ("auto", True), ("local", True), ("ray://head:10001", True), ("10.0.0.1:6379", True),
    ("head-node:6379", True), ("[::1]:6379", True), ("s3://bucket/photos", False),
    ("photos/", False), ("C:/photos", False), ("dir:with/colon", False)])
def test_ray_flag_takes_only_address_like_words(word, address):
    from fastcodec.cli import _ray_flag

    argv = _ray_flag(["compress", "--ray", word, "-o", "out"])
    assert (argv[1:3] == ["--ray", word]) == address
    assert (argv[1] == "--ray=local") == (not address)


# ------------------------------------------------------------------------ on the local cluster


def test_compress_matches_single_process_then_decompresses(local_ray, images, reference,
                                                           tmp_path):
    src, imgs, corrupt = images
    out = tmp_path / "fcc"
    summary = fray.compress_dataset(str(src), str(out), quality=QUALITY, concurrency=2,
                                    batch_size=4)
    assert (summary.total, summary.ok, summary.skipped, summary.failed) == (
        len(imgs) + 1, len(imgs), 0, 1)
    assert _files(out) == {_fcc(k) for k in imgs} | {"_manifest.parquet"}
    for key, blob in reference.items():
        assert (out / _fcc(key)).read_bytes() == blob, key

    rows = fray.read_manifest(summary.manifest)
    assert [r["source"] for r in rows] == sorted((src / k).as_posix() for k in [*imgs, corrupt])
    by_key = {Path(r["source"]).relative_to(src).as_posix(): r for r in rows}
    bad = by_key.pop(corrupt)
    assert bad["status"] == "failed" and "not a readable image" in bad["error"]
    assert bad["bytes"] is None and not (out / _fcc(corrupt)).exists()
    for key, row in by_key.items():
        blob = reference[key]
        w, h = imgs[key].size
        assert row["status"] == "ok" and row["error"] is None
        assert row["output"] == (out / _fcc(key)).as_posix()
        assert (row["bytes"], row["crc32"]) == (len(blob), zlib.crc32(blob))
        assert (row["width"], row["height"], row["quality"]) == (w, h, QUALITY)
        assert row["bpp"] == pytest.approx(8 * len(blob) / (w * h))

    # back to PNG files: pixels equal the single-process decoder's
    png = tmp_path / "png"
    back = fray.decompress_dataset(str(out), str(png), concurrency=1, batch_size=8)
    assert (back.ok, back.failed) == (len(imgs), 0)
    expected = dict(zip(reference, fastcodec.decompress(list(reference.values()))))
    for key, image in expected.items():
        with PIL_Image.open(png / key) as im:
            assert np.array_equal(np.asarray(im), image), key

    # and to a Dataset of arrays (gray as HxWx1)
    decoded = {r["path"]: r for r in fray.decompress_dataset(str(out), concurrency=1).take_all()}
    assert sorted(decoded) == sorted(_fcc(k) for k in imgs)
    for key, image in expected.items():
        row = decoded[_fcc(key)]
        assert row["error"] is None
        assert np.array_equal(np.asarray(row["image"]).reshape(image.shape), image), key
    assert decoded["gray.fcc"]["layout"] == "gray"


def test_interrupted_run_resumes_without_loss_or_duplicates(local_ray, images, reference,
                                                           tmp_path, capsys):
    src, imgs, corrupt = images
    out = tmp_path / "fcc"

    class Interrupt(Exception):
        pass

    def stop_after_first_results(done, total):
        raise Interrupt  # as a Ctrl-C on the driver after the first batch came back

    with pytest.raises(Interrupt):
        fray.compress_dataset(str(src), str(out), quality=QUALITY, concurrency=1, batch_size=4,
                              progress=stop_after_first_results)
    written = _settled_files(out)
    assert "_manifest.parquet" not in written  # the manifest only appears on completion
    done = sorted(k for k in imgs if _fcc(k) in written)
    missing = sorted(k for k in imgs if _fcc(k) not in written)
    assert done and missing, written  # stopped midway
    for key in done:
        assert (out / _fcc(key)).read_bytes() == reference[key]
    # what a crash can leave besides: a damaged output and a temporary file of a killed write
    damaged = out / _fcc(missing[0])
    damaged.parent.mkdir(parents=True, exist_ok=True)
    damaged.write_bytes(reference[missing[0]][:-5])
    stale = out / "a" / f".img01.fcc.{'0' * 32}.fcctmp"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"partial")
    old = time.time() - 3600
    os.utime(stale, (old, old))

    # resume through the CLI entry point (the same code path)
    args = argparse.Namespace(inputs=[str(src)], out=str(out), quality=QUALITY, device=None,
                              batch_size=4, force=False, skip_existing=True, keep_going=True,
                              json=True, ray=None, workers=2)
    assert fray.run_cli(args) == 1  # the corrupt file failed
    printed = capsys.readouterr().out  # Ray may print its own lines around the JSON
    summary, _ = json.JSONDecoder().raw_decode(printed[printed.index("{\n"):])
    assert summary["skipped"] == len(done)
    assert summary["ok"] == len(imgs) - len(done) and summary["failed"] == 1
    assert _files(out) == {_fcc(k) for k in imgs} | {"_manifest.parquet"}
    for key, blob in reference.items():
        assert (out / _fcc(key)).read_bytes() == blob, key
    rows = fray.read_manifest(out / "_manifest.parquet")
    sources = [r["source"] for r in rows]
    assert len(sources) == len(set(sources)) == len(imgs) + 1
    status = {Path(r["source"]).relative_to(src).as_posix(): r["status"] for r in rows}
    assert status[corrupt] == "failed"
    assert {k for k, s in status.items() if s == "skipped"} == set(done)


def test_cli_compress_with_ray(local_ray, images, reference, tmp_path, capsys):
    """``fastcodec compress --ray INPUT -o OUT``: ``--ray`` followed by an input means a local
    cluster (here: the one already running); the outputs are the single-process API's bytes."""
    from fastcodec.cli import main

    src, imgs, corrupt = images
    out = tmp_path / "cli"
    status = main(["compress", "--ray", str(src), "-o", str(out), "-q", str(QUALITY),
                   "--keep-going", "--json"])
    assert status == 1  # the corrupt input failed, the rest went on
    for key in imgs:
        assert (out / _fcc(key)).read_bytes() == reference[key]
    rows = {r["source"].rsplit("/", 1)[-1]: r
            for r in fray.read_manifest(out / "_manifest.parquet")}
    assert rows[corrupt.rsplit("/", 1)[-1]]["status"] == "failed"
    # rerun without --force or --skip-existing: existing outputs are an error, nothing rewritten
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.fcc")}
    assert main(["compress", str(src), "--ray", "-o", str(out), "-q", str(QUALITY),
                 "--keep-going", "--json"]) == 1
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.fcc")} == before
