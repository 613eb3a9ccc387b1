"""The ``fastcodec`` command line (also ``python -m fastcodec``).

Subcommands: ``compress``, ``decompress``, ``info``, ``demo``, ``eval``, ``bench``, ``train``
(``fastcodec COMMAND --help`` for each).

Rules shared by ``compress`` and ``decompress``:

* Inputs are files or folders. A folder is searched recursively (sorted; hidden names and the
  output folder are skipped) for the files the command reads, and each output keeps its path
  relative to that folder: ``compress photos -o out`` writes ``photos/a/b.png`` to
  ``out/a/b.fcc``. A file named on the command line is written under its own name
  (``x/b.png`` -> ``out/b.fcc``). Two inputs that would be written to the same output (``b.png``
  and ``b.jpg``, or two ``b.png`` from different places) are a usage error, reported before
  anything is written.
* An existing output is never overwritten without ``--force``: it is an error naming the file
  (``--skip-existing`` skips it instead). Every output is written to a temporary file in its
  folder, fsync'ed and renamed into place, so an interrupted run leaves only complete outputs; run
  the same command again with ``--skip-existing`` to finish it. (Ctrl-C and SIGTERM remove the
  temporary files; only a hard kill can leave a hidden ``.NAME.*.fcctmp`` behind.)
* Without ``--keep-going`` the run stops at the first failure (outputs already written stay
  valid); with it, each failure is reported on one line and the other files go on.
* Exit status: 0 when every file succeeded (or was skipped), 1 when any failed, 2 for usage
  errors (bad options, missing inputs, output name collisions, a codec that cannot be set up),
  130 when interrupted (Ctrl-C or SIGTERM).
* A progress bar is drawn on stderr when it is a terminal; a summary table goes to stdout at the
  end (files, megapixels, bytes in and out, bpp, MP/s over the coding time, the one-off codec
  set-up not included), or with ``--json`` one JSON document (every file's status, sizes and
  bpp, and the totals).
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Optional

from fastcodec.cli.commands import run_compress, run_decompress, run_demo, run_info, run_train
from fastcodec.cli.errors import EXIT_INTERRUPTED, EXIT_USAGE, UsageError
from fastcodec.cli.imagefiles import OUTPUT_FORMATS


def _add_run_options(p: argparse.ArgumentParser, *, batch: bool = True) -> None:
    p.add_argument("-o", "--out", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("--device", default=None,
                   help="torch device for the transforms (default: cuda if available, else cpu)")
    p.add_argument("-j", "--jobs", type=_positive_int, default=None, metavar="J",
                   help="range coder threads (default: one per CPU core)")
    if batch:
        p.add_argument("--batch-size", type=_positive_int, default=None, metavar="B",
                       help="images per transform batch (default: 8 on CUDA, 1 on CPU)")
        p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                       help="precision of the transforms (default float32; bfloat16 on CUDA "
                            "or on CPUs with AMX/AVX512-BF16 is 2-4x faster; float16: CUDA). "
                            "The entropy coding stays bit-exact either way")
    once = p.add_mutually_exclusive_group()
    once.add_argument("--force", action="store_true", help="overwrite existing outputs")
    once.add_argument("--skip-existing", action="store_true",
                      help="leave existing outputs alone (finishes an interrupted run)")
    p.add_argument("--keep-going", action="store_true",
                   help="report a file that fails and go on with the others (exit status 1)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON document (files and totals) instead of the table")


def _add_model_option(p: argparse.ArgumentParser) -> None:
    from fastcodec.zoo import DEFAULT_MODEL

    p.add_argument("--model", default=DEFAULT_MODEL, metavar="ID",
                   help="installed model to code with (`python -m fastcodec.zoo list`; "
                        "default: %(default)s); decompress finds it in each file")


def _add_max_pixels_option(p: argparse.ArgumentParser) -> None:
    from fastcodec.container import DEFAULT_MAX_PIXELS

    p.add_argument("--max-pixels", type=_positive_int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help="refuse files declaring more than N pixels per image, a guard against "
                        "crafted headers (default: %(default)s)")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def refine_steps_arg(text: str) -> int:
    """``--refine STEPS`` (argparse type); imports torch only when the option is given."""
    from fastcodec.refine import steps_argument

    return steps_argument(text)


def _quality(text: str) -> float:
    """A public quality from the command line, snapped to the grid (argparse type)."""
    from fastcodec.zoo import snap_quality

    try:
        value = float(text)
        snapped = snap_quality(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if abs(snapped - value) > 1e-9:
        print(f"fastcodec: note: quality {text} is not on the 0.25 grid; using {snapped:g}",
              file=sys.stderr)
    return snapped


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastcodec", description=__doc__.replace("``", ""),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from fastcodec import __version__

    parser.add_argument("--version", action="version", version=f"fastcodec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    comp = sub.add_parser("compress", help="images (files or folders) -> .fcc files",
                          description="Compress images (PNG, JPEG, anything Pillow reads; "
                          "folders recursively) to .fcc files in OUTDIR, keeping the paths "
                          "under each folder. See `fastcodec --help` for the shared rules.")
    comp.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    comp.add_argument("-q", "--quality", type=_quality, default=4.0,
                      help="1 (smallest) to 6 (best), steps of 0.25 (default: %(default)s)")
    _add_run_options(comp)
    _add_model_option(comp)
    comp.add_argument("--refine", type=refine_steps_arg, default=0, metavar="STEPS",
                      help="encoder-side latent refinement: STEPS optimization steps per image "
                           "for a higher PSNR at about the same size (same model and format; "
                           "each step runs the decoder forward and backward, about 4 decodes; "
                           "default 0: off; try 50)")
    comp.add_argument("--convert", action="store_true",
                      help="convert RGBA (alpha dropped), 16-bit, palette and other modes "
                           "instead of failing on them")
    comp.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                      help="run on Ray Data (pip install 'fastcodec[ray]'; docs/ray.md): the "
                           "cluster at ADDRESS (auto, host:port, ray://...), else a local one; "
                           "writes OUTDIR/_manifest.parquet")
    comp.set_defaults(run=run_compress)

    dec = sub.add_parser("decompress", help=".fcc files (or folders) -> images",
                         description="Decompress .fcc files (folders: every *.fcc inside, "
                         "recursively) to images in OUTDIR, keeping the paths under each folder.")
    dec.add_argument("inputs", nargs="+", metavar="FILE|DIR", help=".fcc files or folders")
    dec.add_argument("--format", choices=list(OUTPUT_FORMATS), default="png",
                     help="output image format (default: %(default)s)")
    _add_run_options(dec)
    _add_max_pixels_option(dec)
    dec.set_defaults(run=run_decompress)

    info = sub.add_parser("info", help="print the header of .fcc files",
                          description="Check .fcc files and print their header fields (model, "
                          "quality, size, layout, latent shape, streams), size and bpp.")
    info.add_argument("files", nargs="+", metavar="FILE")
    info.add_argument("--json", action="store_true", help="print a JSON list instead")
    _add_max_pixels_option(info)
    info.set_defaults(run=run_info)

    demo = sub.add_parser("demo", help="compress the bundled sample image at a few qualities",
                          description="Compress the bundled sample image(s) (or IMAGES) at a few "
                          "qualities; write the .fcc files and the decoded PNGs to OUT (its own "
                          "files there are replaced on every run) and print bpp, PSNR, MS-SSIM "
                          "and speed.")
    demo.add_argument("images", nargs="*", help="image files (default: the bundled samples)")
    demo.add_argument("-o", "--out", default="fastcodec-demo",
                      help="output folder (default: %(default)s)")
    demo.add_argument("-q", "--quality", nargs="+", default=[2.0, 4.0, 6.0],
                      type=_quality, metavar="Q", help="qualities, 1 to 6 (default: 2 4 6)")
    demo.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    _add_model_option(demo)
    demo.set_defaults(run=run_demo)

    from fastcodec import bench  # options, help and run() live there (stdlib-only import)
    from fastcodec import evaluate

    evaluate.configure_parser(sub.add_parser(
        "eval", help="rate-distortion and speed of the codec on a folder of images"))
    bench.configure_parser(sub.add_parser("bench",
                                          help="run the benchmark suite; store, compare, plot"))
    train = sub.add_parser(
        "train", add_help=False,
        help="train the learned codec (options: fastcodec train --help)",
    )
    train.add_argument("train_args", nargs=argparse.REMAINDER)
    train.set_defaults(run=run_train)
    return parser


_RAY_HOST_PORT = re.compile(r"^[\w.\-]+:\d+$|^\[[0-9A-Fa-f:.]+\]:\d+$")  # host:port, [v6]:port


def _looks_like_ray_address(text: str) -> bool:
    """``auto``, ``local``, ``ray://...`` or ``host:port``; not ``s3://...`` or a path."""
    return text in ("auto", "local") or text.startswith("ray://") or bool(
        _RAY_HOST_PORT.match(text))


def _ray_flag(argv: list) -> list:
    """``--ray`` takes an optional ADDRESS; a following word that is not address-like (``auto``,
    ``local``, ``host:port``, ``ray://...``) is an input, so ``--ray photos/`` means a local
    cluster and the input ``photos/``."""
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg == "--ray" and not out[i + 1].startswith("-") and not _looks_like_ray_address(
                out[i + 1]):
            out[i] = "--ray=local"
    return out


def main(argv: Optional[list] = None) -> int:
    """Runs the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "train":  # its options are parsed by fastcodec.train itself
        return run_train(argparse.Namespace(train_args=argv[1:]))
    argv = _ray_flag(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UsageError as exc:
        print(f"fastcodec {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # before any output was written (the pipeline handles its own)
        print(f"fastcodec {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
