"""The bodies of the subcommands ``compress``, ``decompress``, ``info``, ``demo`` and ``train``:
each takes the parsed arguments and returns the exit status."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from fastcodec.cli.batch import run_jobs
from fastcodec.cli.errors import EXIT_FAILED, EXIT_OK, UsageError, describe_error
from fastcodec.cli.files import Job, plan_jobs, write_atomic
from fastcodec.cli.imagefiles import OUTPUT_FORMATS, encode_image, image_extensions, read_image
from fastcodec.progress import Progress, format_table

FCC_SUFFIX = ".fcc"


def _make_codec(**kw):
    """A :class:`fastcodec.Codec`; a codec that cannot be set up is a :class:`UsageError`."""
    from fastcodec import Codec

    try:
        return Codec(**kw)
    except Exception as exc:  # bad quality or device, missing weights, ...
        raise UsageError(f"cannot set up the codec: {describe_error(exc)}") from exc


def run_compress(args: argparse.Namespace) -> int:
    if args.ray is not None:  # the same job on Ray Data (docs/ray.md)
        try:
            from fastcodec.ray import run_cli
        except ImportError as exc:
            raise UsageError(str(exc)) from exc
        return run_cli(args)
    exts = image_extensions()
    jobs = plan_jobs(args.inputs, Path(args.out), wanted=lambda p: p.suffix.lower() in exts,
                     out_name=lambda rel: rel.with_suffix(FCC_SUFFIX))
    def setup():
        return _make_codec(quality=args.quality, device=args.device, threads=args.jobs,
                           batch_size=args.batch_size, transform_dtype=args.dtype,
                           model=args.model, refine_steps=args.refine).compress

    def load(job: Job) -> np.ndarray:
        job.input_bytes = job.src.stat().st_size
        image, job.layout = read_image(job.src, convert=args.convert)
        job.height, job.width = image.shape[:2]
        return image

    def render(job: Job, image, blob: bytes) -> bytes:
        job.coded_bytes = len(blob)
        return blob

    return run_jobs(args, jobs, "compress", load=load, setup=setup, render=render,
                     extra={"quality": args.quality, "model": args.model,
                            "refine_steps": args.refine})


def run_decompress(args: argparse.Namespace) -> int:
    ext = OUTPUT_FORMATS[args.format][1]
    jobs = plan_jobs(args.inputs, Path(args.out),
                     wanted=lambda p: p.suffix.lower() == FCC_SUFFIX,
                     out_name=lambda rel: rel.with_suffix(ext))

    def setup():
        codec = _make_codec(device=args.device, threads=args.jobs, batch_size=args.batch_size,
                            transform_dtype=args.dtype)
        return lambda blobs: codec.decompress(blobs, output="numpy", max_pixels=args.max_pixels)

    def load(job: Job) -> bytes:
        blob = job.src.read_bytes()
        header, _ = _unpack(blob, args.max_pixels)  # a damaged or foreign file fails here
        job.input_bytes = job.coded_bytes = len(blob)
        job.height, job.width, job.layout = header.height, header.width, header.layout
        return blob

    def render(job: Job, blob: bytes, image: np.ndarray) -> bytes:
        return encode_image(image, args.format)

    return run_jobs(args, jobs, "decompress", load=load, setup=setup, render=render,
                     extra={"format": args.format})


def _unpack(blob: bytes, max_pixels: int):
    """``container.unpack`` with the cap's hint in command-line terms."""
    from fastcodec.container import FormatError, unpack

    try:
        return unpack(blob, max_pixels=max_pixels)
    except FormatError as exc:
        text = str(exc)
        if "(max_pixels)" not in text:
            raise
        raise FormatError(text.replace("pass max_pixels=", "pass --max-pixels ")) from None


def run_info(args: argparse.Namespace) -> int:
    docs, failed = [], 0
    for name in args.files:
        path = Path(name)
        try:
            blob = path.read_bytes()
            header, _ = _unpack(blob, args.max_pixels)
        except (OSError, ValueError) as exc:  # FormatError is a ValueError
            failed += 1
            print(f"fastcodec info: error: {path}: {describe_error(exc)}", file=sys.stderr)
            if args.json:
                docs.append({"file": str(path), "error": describe_error(exc)})
            continue
        doc = {"file": str(path), "model_id": header.model_id,
               "weights_hash": header.weights_hash.hex(), "version": header.version,
               "quality": header.quality, "height": header.height, "width": header.width,
               "layout": header.layout, "latent_shape": list(header.latent_shape),
               "stream_lengths": list(header.stream_lengths), "bytes": len(blob),
               "bpp": 8 * len(blob) / (header.height * header.width)}
        docs.append(doc)
        if not args.json:
            m, h, w = header.latent_shape
            lengths = ", ".join(str(n) for n in header.stream_lengths)
            print(f"{path}\n"
                  f"  model     {header.model_id} (weights {doc['weights_hash']}, format "
                  f"v{header.version})\n"
                  f"  quality   {header.quality:g}\n"
                  f"  size      {header.width}x{header.height} ({header.layout})\n"
                  f"  latent    {m}x{h}x{w}\n"
                  f"  streams   {len(header.stream_lengths)} ({lengths} bytes)\n"
                  f"  bytes     {len(blob)}\n"
                  f"  bpp       {doc['bpp']:.4f}")
    if args.json:
        print(json.dumps(docs, indent=2))
    return EXIT_FAILED if failed else EXIT_OK


def run_demo(args: argparse.Namespace) -> int:
    from fastcodec.container import read_header
    from fastcodec.metrics import WINDOW_SIZE, ms_ssim, psnr
    from fastcodec.samples import sample_paths

    paths = [Path(p) for p in args.images] or sample_paths()
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        raise UsageError("two images have the same name: " + ", ".join(map(str, paths)))
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"-o {out_dir} exists and is not a folder")
    qualities = list(dict.fromkeys(args.quality))
    images = {}
    for p in paths:
        try:
            images[p] = read_image(p, convert=True)[0]
        except (OSError, ValueError, TypeError) as exc:
            raise UsageError(f"cannot read {p}: {describe_error(exc)}") from exc
    codecs = {q: _make_codec(quality=q, device=args.device, model=args.model)
              for q in qualities}
    warm = np.zeros((32, 32, 3), np.uint8)  # loads weights and tables, warms the kernels
    codecs[qualities[0]].decompress(codecs[qualities[0]].compress(warm))

    rows, records = [], []
    progress = Progress(len(images) * len(codecs), label="demo")
    for path, image in images.items():
        pixels = image.shape[0] * image.shape[1]
        for q, codec in codecs.items():
            progress.update(0)
            t0 = time.perf_counter()
            (blob,) = codec.compress(image)
            t1 = time.perf_counter()
            (decoded,) = codec.decompress([blob])
            t2 = time.perf_counter()
            if decoded.shape != image.shape:
                raise RuntimeError(f"{path}: decoded shape {decoded.shape} != {image.shape}")
            name = f"{path.stem}-q{q:g}"
            write_atomic(out_dir / (name + FCC_SUFFIX), blob, overwrite=True)
            write_atomic(out_dir / (name + ".png"), encode_image(decoded, "png"), overwrite=True)
            header = read_header(blob)
            rec = {"image": str(path), "quality": header.quality, "model_id": header.model_id,
                   "height": image.shape[0], "width": image.shape[1], "bytes": len(blob),
                   "bpp": 8 * len(blob) / pixels, "psnr": psnr(image, decoded),
                   # MS-SSIM needs WINDOW_SIZE px per side; smaller images get None (n/a)
                   "ms_ssim": (ms_ssim(image, decoded) if min(image.shape[:2]) >= WINDOW_SIZE
                               else None),
                   "encode_mp_per_s": pixels / 1e6 / (t1 - t0),
                   "decode_mp_per_s": pixels / 1e6 / (t2 - t1),
                   "fcc": str(out_dir / (name + FCC_SUFFIX)), "png": str(out_dir / (name + ".png"))}
            records.append(rec)
            rows.append([path.name, f"{image.shape[1]}x{image.shape[0]}", f"{header.quality:g}",
                         f"{rec['bpp']:.3f}", f"{rec['psnr']:.2f}",
                         "n/a" if rec["ms_ssim"] is None else f"{rec['ms_ssim']:.4f}",
                         f"{rec['encode_mp_per_s']:.2f}", f"{rec['decode_mp_per_s']:.2f}",
                         f"{len(blob):,}"])
            progress.update(1, megapixels=2 * pixels / 1e6)
    progress.close()
    write_atomic(out_dir / "demo.json", (json.dumps(records, indent=2) + "\n").encode(),
                 overwrite=True)
    device = getattr(codecs[qualities[0]], "device", args.device or "auto")
    print(f"fastcodec demo: model {records[0]['model_id']} on {device}, "
          f"{len(paths)} image(s) x {len(qualities)} qualities (1 = smallest, 6 = best)\n")
    print(format_table(["image", "size", "quality", "bpp", "PSNR dB", "MS-SSIM", "enc MP/s",
                        "dec MP/s", "bytes"], rows))
    print(f"\nwritten to {out_dir}/: <image>-q<quality>.fcc (compressed), <image>-q<quality>.png "
          "(decoded), demo.json (these numbers)")
    print("MP/s: one image at a time, after a warm-up; `fastcodec compress` batches many.")
    return EXIT_OK


def run_train(args: argparse.Namespace) -> int:
    from fastcodec.train import main as train_main

    return train_main(args.train_args)
