"""Mutation fuzzing of ``.fcc`` containers: every damaged blob must either decode or raise
``FormatError`` (any other exception, a crash or a hang is a failure).

Two levels, each run in a subprocess (a driver script in ``tmp_path``, ``cwd=tmp_path``) so
that a native crash fails the test with its exit code and the case being run:

* container: random valid containers from :func:`fastcodec.container.pack`, mutated, through
  :func:`fastcodec.container.unpack`. A blob that unpacks must re-pack to the same bytes (no
  byte of an accepted container is ignored).
* decode: blobs from :func:`fastcodec.compress` of small random images, mutated, through
  :func:`fastcodec.decompress` (range decoder and synthesis transform). A blob that decodes must
  give an image of the size and layout its header states.

Mutations: bit flips, byte overwrites, insertions/deletions, truncations (every header position
and random payload positions), appended bytes, spliced headers (header of one blob + payload of
another), field-aware header edits and stream-length edits. The CRCs catch almost every random
change, so most mutations are also tried *re-sealed* (both CRCs recomputed, see
``test_container.reseal``), which is what reaches the field checks and the range decoder.

Cases are numbered; case ``i`` of level ``L`` with base seed ``S`` uses the generator
``default_rng([S, i])``, so a failure is reproduced with
``python fuzz_driver.py L S --case i`` (the driver prints the mutated blob as hex).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np

from test_container import FIELDS, field_offset, layout_of, reseal

TESTS_DIR = Path(__file__).resolve().parent
SEED = 20251125
CONTAINER_CASES = 12000
DECODE_CASES = 2000

# ------------------------------------------------------------------------------------ mutations

_INTERESTING = {
    "<B": [0, 1, 2, 3, 0x7F, 0x80, 0xFF],
    "<H": [0, 1, 2, 3, 127, 128, 0x7FFF, 0x8000, 0xFFFF],
    "<I": [0, 1, 15, 16, 17, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF],
}


def _header_end(blob: bytes) -> int:
    """Where the payload starts according to the (possibly damaged) header, clipped."""
    if len(blob) <= 10 or len(blob) < 42 + blob[10]:
        return len(blob)
    return min(layout_of(blob)[2], len(blob))


def _parsable(blob: bytes) -> bool:
    """True when the whole header its own fields declare is present."""
    return len(blob) > 10 and len(blob) >= 42 + blob[10] and len(blob) >= layout_of(blob)[2]


def _positions(blob: bytes, rng, count: int) -> np.ndarray:
    """``count`` byte positions, half of them in the header (where the checks are)."""
    end = max(1, _header_end(blob))
    in_header = rng.integers(0, end, count)
    anywhere = rng.integers(0, len(blob), count)
    return np.where(rng.random(count) < 0.5, in_header, anywhere)


def _bitflips(blob, rng, donors):
    b = bytearray(blob)
    for p in _positions(blob, rng, int(rng.integers(1, 9))):
        b[p] ^= 1 << int(rng.integers(0, 8))
    return bytes(b)


def _overwrite(blob, rng, donors):
    b = bytearray(blob)
    for p in _positions(blob, rng, int(rng.integers(1, 5))):
        b[p] = int(rng.choice([0, 1, 0x7F, 0x80, 0xFF])) if rng.random() < 0.3 else int(
            rng.integers(0, 256))
    return bytes(b)


def _insert_delete(blob, rng, donors):
    p = int(_positions(blob, rng, 1)[0])
    n = int(rng.integers(1, 5))
    if rng.random() < 0.5:
        return blob[:p] + rng.bytes(n) + blob[p:]
    return blob[:p] + blob[p + n:]


def _truncate(blob, rng, donors):
    end = _header_end(blob)
    if rng.random() < 0.5 or end >= len(blob):
        return blob[: int(rng.integers(0, end + 1))]
    return blob[: int(rng.integers(end, len(blob)))]


def _append(blob, rng, donors):
    r = rng.random()
    if r < 0.6:
        return blob + rng.bytes(int(rng.integers(1, 65)))
    if r < 0.8:
        return blob + bytes(int(rng.integers(1, 5)))
    return blob + donors[int(rng.integers(0, len(donors)))]


def _splice(blob, rng, donors):
    """Header of ``blob`` + payload of another blob (or the other way around)."""
    other = donors[int(rng.integers(0, len(donors)))]
    a, b = (blob, other) if rng.random() < 0.5 else (other, blob)
    return a[: _header_end(a)] + b[_header_end(b):]


def _field(blob, rng, donors):
    """One header field set to an interesting or random value (the payload is untouched)."""
    if not _parsable(blob):
        return _bitflips(blob, rng, donors)
    name = str(rng.choice(list(FIELDS)))
    fmt = FIELDS[name][1]
    pos = field_offset(blob, name)
    if fmt == "<8s":
        value = rng.bytes(8)
    else:
        old = struct.unpack_from(fmt, blob, pos)[0]
        top = 256 ** struct.calcsize(fmt) - 1
        r = rng.random()
        if r < 0.4:
            value = int(rng.choice(_INTERESTING[fmt]))
        elif r < 0.7:
            value = min(top, max(0, old + int(rng.choice([-16, -2, -1, 1, 2, 16]))))
        else:
            value = int(rng.integers(0, top + 1))
    b = bytearray(blob)
    struct.pack_into(fmt, b, pos, value)
    return bytes(b)


def _resize(blob, rng, donors):
    """A new image size with a consistent latent shape (small, so decoding stays cheap)."""
    if not _parsable(blob):
        return blob
    b = bytearray(blob)
    height, width = (int(v) for v in rng.integers(1, 65, 2))
    h, w = (struct.unpack_from("<I", blob, field_offset(blob, n))[0] for n in ("h", "w"))
    if rng.random() < 0.5 and h * w <= 64:  # keep the latent grid: only the crop changes
        height, width = 16 * h - int(rng.integers(0, 16)), 16 * w - int(rng.integers(0, 16))
    for name, value in (("height", height), ("width", width), ("h", -(-height // 16)),
                        ("w", -(-width // 16))):
        struct.pack_into(FIELDS[name][1], b, field_offset(blob, name), max(0, value))
    return bytes(b)


def _quality(blob, rng, donors):
    """Another quality: on the 0.25 grid of the shipped model, off it, or outside it."""
    if not _parsable(blob):
        return blob
    r = rng.random()
    if r < 0.5:
        value = 100 + 25 * int(rng.integers(0, 21))
    elif r < 0.8:
        value = int(rng.integers(100, 601))
    else:
        value = int(rng.choice([99, 601, 700, 10000, 0, 65535]))
    b = bytearray(blob)
    struct.pack_into("<H", b, field_offset(blob, "quality"), value)
    return bytes(b)


def _lengths(blob, rng, donors):
    """Stream lengths edited: a boundary moved (total kept), one length set anywhere, two
    streams swapped, or streams merged/split (the stream count changes, the channel map too)."""
    if not _parsable(blob):
        return blob
    id_len, count, end = layout_of(blob)
    if not 1 <= count < 0xFFFF:
        return blob
    base = 42 + id_len
    lengths = list(struct.unpack_from(f"<{count}I", blob, base))
    payload = blob[end:]
    r = rng.random()
    if r < 0.35 and count >= 2:
        i = int(rng.integers(0, count - 1))
        shift = int(rng.integers(-lengths[i], lengths[i + 1] + 1))
        lengths[i] += shift
        lengths[i + 1] -= shift
    elif r < 0.55:
        i = int(rng.integers(0, count))
        lengths[i] = int(rng.choice([0, 1, 31, 32, 33, lengths[i] + 4, lengths[i] - 4,
                                     0xFFFFFFFF]))
    elif r < 0.75 and count >= 2:
        i, j = sorted(int(v) for v in rng.choice(count, 2, replace=False))
        starts = np.concatenate([[0], np.cumsum(lengths)]).astype(int)
        parts = [payload[starts[k]:starts[k + 1]] for k in range(count)]
        parts[i], parts[j] = parts[j], parts[i]
        lengths[i], lengths[j] = lengths[j], lengths[i]
        payload = b"".join(parts) + payload[starts[-1]:]
    else:  # merge two neighbours or split one: a different stream count
        if count >= 2 and rng.random() < 0.5:
            i = int(rng.integers(0, count - 1))
            lengths[i: i + 2] = [lengths[i] + lengths[i + 1]]
        else:
            i = int(rng.integers(0, count))
            cut = int(rng.integers(0, lengths[i] + 1))
            lengths[i: i + 1] = [cut, lengths[i] - cut]
    head = bytearray(blob[:base - 2])
    head += struct.pack(f"<H{len(lengths)}I", len(lengths), *(v % 2**32 for v in lengths))
    head += blob[end - 8:end]
    return bytes(head) + payload


#: (name, mutation, probability of re-sealing the CRCs afterwards)
MUTATIONS = [
    ("bitflip", _bitflips, 0.5),
    ("overwrite", _overwrite, 0.5),
    ("insert_delete", _insert_delete, 0.5),
    ("truncate", _truncate, 0.3),
    ("append", _append, 0.3),
    ("splice", _splice, 0.5),
    ("field", _field, 0.9),
    ("resize", _resize, 0.9),
    ("quality", _quality, 0.9),
    ("lengths", _lengths, 0.9),
]


def mutate(blob: bytes, rng, donors, weights=None) -> tuple[str, bytes]:
    """One or two stacked mutations of ``blob``; returns (description, mutated bytes)."""
    names = []
    for _ in range(1 if rng.random() < 0.8 else 2):
        if not blob:  # truncated to nothing: no byte left to mutate
            break
        k = int(rng.choice(len(MUTATIONS), p=weights))
        name, fn, p_seal = MUTATIONS[k]
        blob = fn(blob, rng, donors)
        if rng.random() < p_seal:
            blob = reseal(blob)
            name += "+reseal"
        names.append(name)
    return "/".join(names), blob


def sweeps(blob: bytes):
    """Deterministic cases: the blob cut at every header position and at some payload ones,
    and each header byte set to 0x00/0xFF with the CRCs re-sealed."""
    end = _header_end(blob)
    for cut in list(range(end + 1)) + [end + 1, (end + len(blob)) // 2, len(blob) - 1]:
        yield f"truncate@{cut}", blob[:cut]
    for pos in range(8, end - 8):
        for value in (0x00, 0xFF):
            b = bytearray(blob)
            b[pos] = value
            yield f"byte@{pos}={value:#04x}+reseal", reseal(bytes(b))


# ------------------------------------------------------------------------------------ levels


def _random_container(rng) -> bytes:
    from fastcodec.container import pack

    M = int(rng.choice([1, 3, 8, 128]))
    S = min(M, int(rng.choice([1, 2, M]))) if rng.random() < 0.7 else int(rng.integers(1, M + 1))
    height, width = (int(v) for v in rng.integers(1, 200, 2))
    ident = "".join(chr(c) for c in rng.integers(33, 127, int(rng.integers(1, 33))))
    streams = [rng.bytes(int(rng.integers(0, 120))) for _ in range(S)]
    quality = int(rng.integers(100, 10001)) / 100
    layout = str(rng.choice(["rgb", "gray", "gray1"]))
    return pack(model_id=ident, weights_hash=rng.bytes(8), quality=quality, height=height,
                width=width, layout=layout, latent_shape=(M, -(-height // 16), -(-width // 16)),
                streams=streams)


class ContainerLevel:
    """unpack() over mutated random containers; accepted blobs must re-pack identically."""

    def __init__(self, seed: int):
        rng = np.random.default_rng([seed, 2**31])
        self.bases = [_random_container(rng) for _ in range(24)]
        self.bases.append(_tiny_container())  # 1x1, one empty stream

    def cases(self, seed: int, count: int):
        yield from ((f"sweep:{d}", b) for blob in self.bases[:4] for d, b in sweeps(blob))
        for i in range(count):
            rng = np.random.default_rng([seed, i])
            base = self.bases[int(rng.integers(0, len(self.bases)))]
            desc, blob = mutate(base, rng, self.bases)
            yield f"{i}:{desc}", blob

    def run(self, blob: bytes) -> None:
        from fastcodec.container import pack, unpack

        header, streams = unpack(blob)
        again = pack(model_id=header.model_id, weights_hash=header.weights_hash,
                     quality=header.quality, height=header.height, width=header.width,
                     layout=header.layout, latent_shape=header.latent_shape, streams=streams)
        assert again == bytes(blob), "an accepted container does not re-pack to the same bytes"


def _tiny_container() -> bytes:
    from fastcodec.container import pack

    return pack(model_id="m", weights_hash=bytes(8), quality=1, height=1, width=1, layout="gray",
                latent_shape=(1, 1, 1), streams=[b""])


def _restream(blob: bytes, num_streams: int) -> bytes:
    """``blob`` (from fastcodec.compress) with its latent symbols re-coded into
    ``num_streams`` streams, using the shipped model's stored tables (contract-level API:
    ``load_model(id).model.export_tables(quality - 1).coder()``, one table per channel)."""
    from fastcodec.container import channel_ranges, pack, unpack
    from fastcodec.zoo import load_model

    header, streams = unpack(blob)
    coder = load_model(header.model_id).model.export_tables(header.quality - 1).coder()
    M, h, w = header.latent_shape
    channels = np.broadcast_to(np.arange(M, dtype=np.int32)[:, None, None], (M, h, w))
    symbols = np.concatenate([coder.decode(s, channels[c0:c1]) for s, (c0, c1) in
                              zip(streams, channel_ranges(M, len(streams)))])
    return pack(model_id=header.model_id, weights_hash=header.weights_hash,
                quality=header.quality, height=header.height, width=header.width,
                layout=header.layout, latent_shape=header.latent_shape,
                streams=[coder.encode(symbols[c0:c1], channels[c0:c1])
                         for c0, c1 in channel_ranges(M, num_streams)])


class DecodeLevel:
    """fastcodec.decompress over mutated blobs of fastcodec.compress; decoded images must have
    the header's size and layout. Cases whose blob passes unpack() count as "deep" (they reach
    the model check, the range decoder and possibly the synthesis transform)."""

    IMAGES = [((24, 40, 3), 4.0), ((33, 17, 3), 2.5), ((24, 40), 6.0), ((17, 20, 1), 1.0)]

    def __init__(self, seed: int):
        import torch

        import fastcodec

        torch.set_num_threads(1)  # tiny images: threads only add overhead
        rng = np.random.default_rng([seed, 2**31])
        images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape, _ in self.IMAGES]
        images[0][:, :20] = images[0][:, :1]  # some smooth area (small symbols) too
        self.bases = [fastcodec.compress(img, quality=q, device="cpu")[0]
                      for img, (_, q) in zip(images, self.IMAGES)]
        out = fastcodec.decompress(self.bases, device="cpu")
        assert [a.shape for a in out] == [img.shape for img in images]
        # small images get one stream: add the first one re-coded as 5 streams, which must
        # decode to the same pixels (streams map to channels as channel_ranges says)
        multi = _restream(self.bases[0], 5)
        assert np.array_equal(fastcodec.decompress([multi], device="cpu")[0], out[0])
        self.bases.append(multi)
        self.decompress = fastcodec.decompress
        # weights favouring the mutations that reach the range decoder with valid CRCs
        w = np.array([1, 1, 0.5, 1, 0.5, 0.5, 3, 2, 2, 3], dtype=float)
        self.weights = w / w.sum()

    def cases(self, seed: int, count: int):
        yield from ((f"sweep:{d}", b) for d, b in sweeps(self.bases[-1]))
        for i in range(count):
            rng = np.random.default_rng([seed, i])
            base = self.bases[int(rng.integers(0, len(self.bases)))]
            desc, blob = mutate(base, rng, self.bases, self.weights)
            yield f"{i}:{desc}", blob

    def run(self, blob: bytes) -> None:
        from fastcodec.container import FormatError, unpack

        try:
            header = unpack(blob)[0]
        except FormatError:
            header = None
        out = self.decompress([blob], device="cpu")  # raises FormatError when header is None
        assert header is not None, "decompress accepted a blob that unpack() rejects"
        assert len(out) == 1
        img = out[0]
        want = {"rgb": (header.height, header.width, 3), "gray": (header.height, header.width),
                "gray1": (header.height, header.width, 1)}[header.layout]
        assert isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.shape == want, (
            f"decoded {type(img).__name__} {getattr(img, 'shape', None)}, header says {want}")


LEVELS = {"container": ContainerLevel, "decode": DecodeLevel}


def _category(exc: Exception) -> str:
    """A short, number-free label of an error message (for coverage counts)."""
    import re

    msg = re.sub(r"\w*\d\w*", "N", str(exc))
    return re.sub(r"bad magic [ 0-9a-fN]*", "bad magic ", msg)[:60]


def drive(level: str, seed: int, count: int, only_case: int | None, progress: str | None) -> int:
    """Runs the cases; prints failures and a JSON summary (last line). Exit status 1 when a
    case raised something other than FormatError or broke an invariant."""
    from fastcodec.container import FormatError, unpack

    if only_case is not None:
        count = only_case + 1
    t0 = time.perf_counter()
    runner = LEVELS[level](seed)
    setup_s = time.perf_counter() - t0
    fd = os.open(progress, os.O_WRONLY | os.O_CREAT | os.O_TRUNC) if progress else None
    stats = Counter()
    categories = Counter()
    failures = []
    t0 = time.perf_counter()
    for desc, blob in runner.cases(seed, count):
        if only_case is not None and not desc.startswith(f"{only_case}:"):
            continue
        if fd is not None:
            os.pwrite(fd, f"{level} seed={seed} case={desc:<60}\n".encode(), 0)
        deep = False
        if level == "decode":
            try:
                unpack(blob)
                deep = True
            except FormatError:
                pass
        try:
            runner.run(blob)
            stats["ok"] += 1
        except FormatError as exc:
            stats["format_error"] += 1
            categories[("deep: " if deep else "") + _category(exc)] += 1
        except Exception as exc:  # noqa: BLE001 - any other exception is the finding
            stats["failure"] += 1
            if len(failures) < 8:
                failures.append(dict(case=desc, error=repr(exc)[:500], blob=bytes(blob).hex(),
                                     trace=traceback.format_exc()[-2000:]))
        stats["cases"] += 1
        stats["deep"] += deep
        if only_case is not None:
            print(f"case {desc}\nblob {bytes(blob).hex()}")
    if fd is not None:
        os.close(fd)
    for f in failures:
        print(f"FAILURE case {f['case']}: {f['error']}\n  blob: {f['blob']}\n{f['trace']}")
    summary = dict(level=level, seed=seed, setup_s=round(setup_s, 2),
                   run_s=round(time.perf_counter() - t0, 2), **stats,
                   categories=dict(categories.most_common()))
    print(json.dumps(summary))
    return 1 if stats["failure"] else 0


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="fuzz driver for .fcc containers")
    p.add_argument("level", choices=sorted(LEVELS))
    p.add_argument("seed", type=int)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--case", type=int, default=None, help="run only this numbered case")
    p.add_argument("--progress", default=None, help="file holding the case being run")
    a = p.parse_args(argv)
    return drive(a.level, a.seed, a.count, a.case, a.progress)


# ------------------------------------------------------------------------------------ tests

DRIVER = """\
import sys
sys.path.insert(0, {tests!r})
import test_container_fuzz
sys.exit(test_container_fuzz.main())
"""


def _run_driver(tmp_path: Path, level: str, count: int, timeout: float) -> dict:
    driver = tmp_path / "fuzz_driver.py"
    driver.write_text(DRIVER.format(tests=str(TESTS_DIR)))
    progress = tmp_path / "progress.txt"
    cmd = [sys.executable, str(driver), level, str(SEED), "--count", str(count),
           "--progress", str(progress)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    try:
        res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=timeout,
                             env=env)
    except subprocess.TimeoutExpired as exc:
        last = progress.read_text().strip() if progress.exists() else "(no case started)"
        raise AssertionError(f"fuzz driver hung for {timeout} s; last case: {last}\n"
                             f"{(exc.stderr or b'')[-3000:]!r}") from None
    last = progress.read_text().strip() if progress.exists() else "(no case started)"
    repro = f"reproduce: cd {tmp_path} && {sys.executable} fuzz_driver.py {level} {SEED} --case N"
    assert res.returncode == 0, (
        f"fuzz driver exited with {res.returncode} (negative: killed by signal); last case: "
        f"{last}\n{repro}\n--- stdout ---\n{res.stdout[-8000:]}\n--- stderr ---\n"
        f"{res.stderr[-4000:]}"
    )
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    print(json.dumps(summary, indent=1))
    return summary


def _seen(summary: dict, fragment: str) -> int:
    return sum(n for cat, n in summary["categories"].items() if fragment in cat)


def test_fuzz_container(tmp_path):
    s = _run_driver(tmp_path, "container", CONTAINER_CASES, timeout=120)
    assert s["cases"] >= CONTAINER_CASES and s.get("failure", 0) == 0
    assert s["ok"] >= 20, "no mutated container was accepted: the re-sealed edits do not work"
    # the mutations reach every check, not only the CRCs
    for fragment in ["empty input", "bad magic", "truncated .fcc data: the header",
                     "truncated .fcc data: expected", "trailing byte",
                     "unsupported .fcc format version", "model id length",
                     ".fcc header: CRC-N mismatch", ".fcc payload: CRC-N mismatch",
                     "flags", "layout code", "latent shape", "streams for", "quality",
                     "invalid .fcc header: model id", "above the limit", "is empty",
                     "latent channels"]:
        assert _seen(s, fragment), f"no case reached the check {fragment!r}: {s['categories']}"


def test_fuzz_decode(tmp_path):
    s = _run_driver(tmp_path, "decode", DECODE_CASES, timeout=240)
    assert s["cases"] >= DECODE_CASES and s.get("failure", 0) == 0
    deep_errors = sum(n for cat, n in s["categories"].items() if cat.startswith("deep: "))
    assert s["deep"] >= DECODE_CASES // 5, "too few mutated blobs reach the decoder"
    assert deep_errors >= 50, "the range decoder / model checks were hardly exercised"
    assert s["ok"] >= 20, "no mutated blob decoded: resize/quality edits should"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
