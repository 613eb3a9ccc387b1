"""The ``.fcc`` container: one coded image = a small checksummed header + range-coder streams.

Byte layout of format version 1 (little-endian; ``L`` = model id length, ``S`` = stream count;
the full specification with the validation rules is docs/format.md)::

    offset      size  type      field
    0           8     bytes     MAGIC = 89 46 43 43 0D 0A 1A 0A  ("\\x89FCC\\r\\n\\x1a\\n")
    8           1     u8        format version (1)
    9           1     u8        flags (must be 0 in version 1)
    10          1     u8        L: model id length, 1..32
    11          L     ASCII     model id (printable, no spaces)
    11+L        8     bytes     weights hash (first 8 bytes of SHA-256 of the weights file)
    19+L        2     u16       quality in hundredths (1.00 -> 100; valid 100..10000)
    21+L        4     u32       original image height H (>= 1)
    25+L        4     u32       original image width W (>= 1)
    29+L        1     u8        layout code: 0 rgb (HxWx3), 1 gray (HxW), 2 gray1 (HxWx1)
    30+L        2     u16       M: latent channels (>= 1)
    32+L        4     u32       h: latent height = ceil(H / 16)
    36+L        4     u32       w: latent width = ceil(W / 16)
    40+L        2     u16       S: number of streams, 1..M
    42+L        4*S   u32[S]    byte length of each stream
    42+L+4S     4     u32       CRC-32 of the payload (the streams concatenated)
    46+L+4S     4     u32       CRC-32 of header bytes [0, 46+L+4S)
    50+L+4S     ...   bytes     payload: stream 0, stream 1, ..., stream S-1

Stream ``i`` holds latent channels ``[i*M//S, (i+1)*M//S)`` (:func:`channel_ranges`). The image
is padded (replicate) at the bottom/right to multiples of 16 before coding; the padding is not
stored, only derived (:attr:`Header.pad_bottom`, :attr:`Header.pad_right`).

:func:`unpack` and :func:`read_header` validate everything before returning and raise
:class:`FormatError` (a ``ValueError``) saying what is wrong; they never allocate memory from a
length field before checking it against the bytes actually present.
"""

from __future__ import annotations

import math
import numbers
import struct
import zlib
from dataclasses import dataclass
from typing import Sequence, Union

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "EXTENSION",
    "FORMAT_VERSION",
    "FormatError",
    "Header",
    "LAYOUTS",
    "MAGIC",
    "MIME_TYPE",
    "channel_ranges",
    "header_size",
    "pack",
    "read_header",
    "unpack",
]

#: PNG-style signature: a high-bit byte (catches 7-bit transfers), the name, CR LF (catches
#: line-ending conversion), ^Z (stops a DOS ``type``), LF (catches LF -> CRLF conversion).
MAGIC: bytes = b"\x89FCC\r\n\x1a\n"
#: The only format version this module reads and writes.
FORMAT_VERSION: int = 1
#: File name extension of coded images.
EXTENSION: str = ".fcc"
#: Suggested media type (unregistered, hence the ``x.`` tree).
MIME_TYPE: str = "image/x.fastcodec"
#: Default cap on ``height * width`` accepted by :func:`unpack` / :func:`read_header` (256 Mpx).
DEFAULT_MAX_PIXELS: int = 2**28
#: Layout names by layout code.
LAYOUTS: tuple[str, ...] = ("rgb", "gray", "gray1")

_LATENT_STRIDE = 16  # the latent is 1/16 of the padded image in each direction
_MAX_MODEL_ID = 32
_QUALITY_MIN, _QUALITY_MAX = 100, 10000  # hundredths: 1.00 .. 100.00
_U16, _U32 = 0xFFFF, 0xFFFFFFFF

_PREFIX = struct.Struct("<8sBBB")  # magic, version, flags, model id length
_FIXED = struct.Struct("<8sHIIBHIIH")  # weights hash .. stream count (after the model id)
_CRC = struct.Struct("<I")
_CRCS = struct.Struct("<II")  # payload CRC, header CRC

Blob = Union[bytes, bytearray, memoryview]


class FormatError(ValueError):
    """Data is not a valid ``.fcc`` container (damaged, truncated, or from another format)."""


def header_size(model_id_length: int, num_streams: int) -> int:
    """Bytes of a version-1 header with an ``L``-byte model id and ``S`` streams:
    ``50 + L + 4*S``."""
    return _PREFIX.size + model_id_length + _FIXED.size + 4 * num_streams + _CRCS.size


@dataclass(frozen=True)
class Header:
    """The decoded header of a ``.fcc`` container.

    Attributes:
        version: format version (1).
        model_id: ASCII id of the model that coded the image (1..32 printable characters).
        weights_hash: first 8 bytes of the SHA-256 of the model's weights file.
        quality: public quality, a multiple of 0.01 (stored as hundredths in a u16).
        height, width: original image size in pixels (>= 1).
        layout: ``"rgb"`` (HxWx3), ``"gray"`` (HxW) or ``"gray1"`` (HxWx1); grayscale is coded
            as RGB with equal channels and decoded back to its layout.
        latent_shape: ``(M, h, w)`` with ``h = ceil(height/16)``, ``w = ceil(width/16)``.
        stream_lengths: byte length of each range-coder stream (stream ``i`` holds the latent
            channels ``channel_ranges(M, S)[i]``).
        payload_crc: CRC-32 (zlib) of the streams concatenated.
    """

    version: int
    model_id: str
    weights_hash: bytes
    quality: float
    height: int
    width: int
    layout: str
    latent_shape: tuple[int, int, int]
    stream_lengths: tuple[int, ...]
    payload_crc: int

    @property
    def pad_bottom(self) -> int:
        """Rows of replicate padding added below the image before coding (0..15)."""
        return self.latent_shape[1] * _LATENT_STRIDE - self.height

    @property
    def pad_right(self) -> int:
        """Columns of replicate padding added right of the image before coding (0..15)."""
        return self.latent_shape[2] * _LATENT_STRIDE - self.width

    @property
    def num_streams(self) -> int:
        return len(self.stream_lengths)

    @property
    def header_size(self) -> int:
        """Bytes of the header (everything before the first stream)."""
        return header_size(len(self.model_id), self.num_streams)

    @property
    def payload_size(self) -> int:
        """Bytes of the streams together."""
        return sum(self.stream_lengths)

    @property
    def total_size(self) -> int:
        """Bytes of the whole container."""
        return self.header_size + self.payload_size

    def channel_ranges(self) -> list[tuple[int, int]]:
        """``[start, stop)`` latent channels of each stream."""
        return channel_ranges(self.latent_shape[0], self.num_streams)

    def to_dict(self) -> dict:
        """JSON-friendly fields (hash and CRC as lowercase hex strings, tuples as lists)."""
        return {
            "version": self.version,
            "model_id": self.model_id,
            "weights_hash": self.weights_hash.hex(),
            "quality": self.quality,
            "height": self.height,
            "width": self.width,
            "layout": self.layout,
            "pad_bottom": self.pad_bottom,
            "pad_right": self.pad_right,
            "latent_shape": list(self.latent_shape),
            "num_streams": self.num_streams,
            "stream_lengths": list(self.stream_lengths),
            "header_bytes": self.header_size,
            "payload_bytes": self.payload_size,
            "total_bytes": self.total_size,
            "payload_crc": f"{self.payload_crc:08x}",
        }


def channel_ranges(M: int, S: int) -> list[tuple[int, int]]:
    """The ``[start, stop)`` latent channels of each of ``S`` streams over ``M`` channels:
    stream ``i`` holds ``[i*M//S, (i+1)*M//S)`` (contiguous, sizes differ by at most one)."""
    M, S = _int("M", M), _int("S", S)
    if M < 1 or not 1 <= S <= M:
        raise ValueError(f"need M >= 1 and 1 <= S <= M, got M={M}, S={S}")
    return [(i * M // S, (i + 1) * M // S) for i in range(S)]


# ------------------------------------------------------------------------------------- helpers


def _int(name: str, value) -> int:
    """``value`` as a Python int (ints and integer numpy scalars; bools are refused)."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    return value.__index__()


def _latent_side(n: int) -> int:
    return -(-n // _LATENT_STRIDE)


def _model_id_problem(model_id: str) -> str | None:
    """Why ``model_id`` is not a valid id (None when it is)."""
    if not 1 <= len(model_id) <= _MAX_MODEL_ID:
        return f"model id must have 1..{_MAX_MODEL_ID} characters, got {len(model_id)}"
    if not all("!" <= c <= "~" for c in model_id):
        return f"model id must be printable ASCII without spaces, got {model_id!r}"
    return None


def _view(blob: Blob) -> memoryview:
    """A flat unsigned-byte view of ``blob`` (no copy unless the view is strided)."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected bytes, bytearray or memoryview, got {type(blob).__name__}")
    view = memoryview(blob)
    if not view.c_contiguous:  # strided views: their bytes in C order, copied once
        return memoryview(view.tobytes())
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    return view


_OTHER_FORMATS = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\xff\x0a", "a JPEG XL image"),
    (b"\x00\x00\x00\x0cJXL ", "a JPEG XL image"),
    (b"PK\x03\x04", "a ZIP archive (a PyTorch checkpoint or weights file?)"),
    (b"\x1f\x8b", "gzip data"),
)


def _sniff(head: bytes) -> str:
    """A hint about what ``head`` (the first bytes of some data) is, or ``""``."""
    if head.startswith((b"\x89FCC\n\x1a\n", b"\x89FCC\r\r\n", b"\x89FCC\r\n\x1a\r\n")):
        return " (it looks like an .fcc file whose line endings were converted: transfer it in " \
               "binary mode)"
    if head.startswith(b"\x09FCC\r\n\x1a\n"):
        return " (it looks like an .fcc file that lost the high bit of its bytes: transfer it " \
               "in binary mode)"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return " (it looks like a WebP image)"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        kind = {b"avif": "an AVIF image", b"avis": "an AVIF image", b"heic": "a HEIC image",
                b"mif1": "a HEIF image"}.get(brand, "an ISO media file")
        return f" (it looks like {kind})"
    for magic, name in _OTHER_FORMATS:
        if head.startswith(magic):
            return f" (it looks like {name})"
    return ""


def _truncated(what: str, need: int, have: int) -> FormatError:
    return FormatError(
        f"truncated .fcc data: {what} needs {need} bytes, only {have} present "
        f"({need - have} missing)"
    )


# ------------------------------------------------------------------------------------- writing


def pack(
    *,
    model_id: str,
    weights_hash: bytes,
    quality: float,
    height: int,
    width: int,
    layout: str,
    latent_shape: Sequence[int],
    streams: Sequence[Blob],
) -> bytes:
    """Builds a ``.fcc`` container (lengths and CRCs are computed here).

    Args:
        model_id: printable ASCII without spaces, 1..32 characters.
        weights_hash: 8 bytes.
        quality: multiple of 0.01 in [1, 100] (stored as hundredths).
        height, width: original image size, 1..2**32-1.
        layout: one of :data:`LAYOUTS`.
        latent_shape: ``(M, h, w)``, ``1 <= M < 2**16``, ``h = ceil(height/16)``,
            ``w = ceil(width/16)``.
        streams: 1..M byte strings (each < 4 GiB); stream ``i`` holds the latent channels
            ``channel_ranges(M, len(streams))[i]``. Empty streams are allowed by the container
            (the range coder itself never writes one).

    Raises ``TypeError``/``ValueError`` for invalid arguments. The result is always accepted by
    :func:`unpack` when ``height * width`` is within its ``max_pixels``.
    """
    if not isinstance(model_id, str):
        raise TypeError(f"model_id must be a str, got {type(model_id).__name__}")
    problem = _model_id_problem(model_id)
    if problem:
        raise ValueError(problem)
    if not isinstance(weights_hash, (bytes, bytearray, memoryview)):
        raise TypeError(f"weights_hash must be bytes, got {type(weights_hash).__name__}")
    weights_hash = bytes(weights_hash)
    if len(weights_hash) != 8:
        raise ValueError(f"weights_hash must be 8 bytes, got {len(weights_hash)}")
    if isinstance(quality, bool) or not isinstance(quality, numbers.Real):
        raise TypeError(f"quality must be a number, got {type(quality).__name__}")
    q = float(quality)
    if not math.isfinite(q) or not 1.0 <= q <= 100.0:
        raise ValueError(f"quality must be in [1, 100], got {quality!r}")
    hundredths = round(q * 100)
    if abs(q * 100 - hundredths) > 1e-3:  # absorbs float32 noise, refuses 4.125
        raise ValueError(f"quality must be a multiple of 0.01 (stored in hundredths), got {q!r}")
    height, width = _int("height", height), _int("width", width)
    for name, v in (("height", height), ("width", width)):
        if not 1 <= v <= _U32:
            raise ValueError(f"{name} must be in 1..{_U32}, got {v}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    shape = tuple(latent_shape)
    if len(shape) != 3:
        raise ValueError(f"latent_shape must be (M, h, w), got {latent_shape!r}")
    M, h, w = (_int("latent_shape", v) for v in shape)
    if not 1 <= M <= _U16:
        raise ValueError(f"latent channels M must be in 1..{_U16}, got {M}")
    want = (_latent_side(height), _latent_side(width))
    if (h, w) != want:
        raise ValueError(
            f"latent_shape {(M, h, w)} does not match a {height}x{width} image: "
            f"expected (M, {want[0]}, {want[1]})"
        )
    if isinstance(streams, (bytes, bytearray, memoryview)):
        raise TypeError("streams must be a list of bytes objects, not a single bytes object")
    views = []
    for i, s in enumerate(streams):
        if not isinstance(s, (bytes, bytearray, memoryview)):
            raise TypeError(f"streams[{i}] must be bytes, got {type(s).__name__}")
        views.append(_view(s))
    if not 1 <= len(views) <= M:
        raise ValueError(f"need 1..M={M} streams, got {len(views)}")
    lengths = [v.nbytes for v in views]
    for i, n in enumerate(lengths):
        if n > _U32:
            raise ValueError(f"streams[{i}] is {n} bytes; a stream must be under 4 GiB")

    payload_crc = 0
    for v in views:
        payload_crc = zlib.crc32(v, payload_crc)
    ident = model_id.encode("ascii")
    head = b"".join((
        _PREFIX.pack(MAGIC, FORMAT_VERSION, 0, len(ident)),
        ident,
        _FIXED.pack(weights_hash, hundredths, height, width, LAYOUTS.index(layout), M, h, w,
                    len(views)),
        struct.pack(f"<{len(lengths)}I", *lengths),
        _CRC.pack(payload_crc),
    ))
    return b"".join((head, _CRC.pack(zlib.crc32(head)), *views))


# ------------------------------------------------------------------------------------- reading


def _parse_header(view: memoryview, max_pixels: int) -> Header:
    """Validates and decodes the header at the start of ``view`` (the payload is not read)."""
    size = len(view)
    if size == 0:
        raise FormatError("empty input: not an .fcc file")
    head = bytes(view[: len(MAGIC)])
    if not MAGIC.startswith(head):
        raise FormatError(f"not an .fcc file: bad magic {head.hex(' ')}{_sniff(bytes(view[:16]))}")
    if size < _PREFIX.size:
        raise _truncated("the header", _PREFIX.size, size)
    _, version, flags, id_len = _PREFIX.unpack_from(view, 0)
    if version != FORMAT_VERSION:
        raise FormatError(
            f"unsupported .fcc format version {version}: this fastcodec reads version "
            f"{FORMAT_VERSION} only" + (" (a newer fastcodec may read it)"
                                        if version > FORMAT_VERSION else "")
        )
    # The model id length and stream count locate the header CRC, so they are range-checked
    # before it can be verified.
    if not 1 <= id_len <= _MAX_MODEL_ID:
        raise FormatError(f"corrupt header: model id length {id_len} is outside 1..{_MAX_MODEL_ID}")
    fixed_end = _PREFIX.size + id_len + _FIXED.size
    if size < fixed_end:
        raise _truncated("the header", fixed_end, size)
    (weights_hash, hundredths, height, width, layout_code, M, h, w,
     num_streams) = _FIXED.unpack_from(view, _PREFIX.size + id_len)
    end = header_size(id_len, num_streams)
    if size < end:
        raise _truncated(f"the header (it declares {num_streams} streams, unless that count is "
                         f"damaged)", end, size)
    header_crc = _CRC.unpack_from(view, end - 4)[0]
    actual = zlib.crc32(view[: end - 4])
    if header_crc != actual:
        raise FormatError(
            f"corrupt .fcc header: CRC-32 mismatch (stored {header_crc:08x}, computed "
            f"{actual:08x}); the file is damaged"
        )
    # From here on the bytes are what a writer wrote: check that the values make sense.
    if flags != 0:
        raise FormatError(
            f"unsupported .fcc flags 0x{flags:02x}: version {FORMAT_VERSION} defines no flags"
        )
    try:
        model_id = bytes(view[_PREFIX.size : _PREFIX.size + id_len]).decode("ascii")
    except UnicodeDecodeError:
        model_id = None
    problem = "model id is not ASCII" if model_id is None else _model_id_problem(model_id)
    if problem:
        raise FormatError(f"invalid .fcc header: {problem}")
    if not _QUALITY_MIN <= hundredths <= _QUALITY_MAX:
        raise FormatError(
            f"invalid .fcc header: quality {hundredths / 100:.2f} is outside 1.00..100.00"
        )
    if layout_code >= len(LAYOUTS):
        raise FormatError(
            f"invalid .fcc header: unknown layout code {layout_code} (known: "
            + ", ".join(f"{i} {name}" for i, name in enumerate(LAYOUTS)) + ")"
        )
    if M < 1:
        raise FormatError("invalid .fcc header: 0 latent channels")
    if not 1 <= num_streams <= M:
        raise FormatError(
            f"invalid .fcc header: {num_streams} streams for {M} latent channels "
            f"(need 1..{M})"
        )
    if height < 1 or width < 1:
        raise FormatError(f"invalid .fcc header: image size {height}x{width} is empty")
    if height * width > max_pixels:
        raise FormatError(
            f"image is {height}x{width} = {height * width} pixels, above the limit of "
            f"{max_pixels} pixels (max_pixels); if the file is trusted, pass "
            f"max_pixels={height * width} or more to accept it"
        )
    want = (_latent_side(height), _latent_side(width))
    if (h, w) != want:
        raise FormatError(
            f"invalid .fcc header: latent shape {(M, h, w)} does not match a "
            f"{height}x{width} image (expected ({M}, {want[0]}, {want[1]}))"
        )
    lengths = struct.unpack_from(f"<{num_streams}I", view, fixed_end)
    payload_crc = _CRC.unpack_from(view, end - 8)[0]
    return Header(
        version=version,
        model_id=model_id,
        weights_hash=weights_hash,
        quality=hundredths / 100,
        height=height,
        width=width,
        layout=LAYOUTS[layout_code],
        latent_shape=(M, h, w),
        stream_lengths=tuple(lengths),
        payload_crc=payload_crc,
    )


def _check_max_pixels(max_pixels) -> int:
    max_pixels = _int("max_pixels", max_pixels)
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    return max_pixels


def read_header(blob: Blob, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Header:
    """The validated header of ``blob`` (bytes, bytearray or memoryview).

    Only the header has to be present (a prefix of a file is enough); the header CRC is
    checked, the payload and its CRC are not (:func:`unpack` checks those). Raises
    :class:`FormatError` for data that is not a valid header, ``TypeError`` for other inputs.
    """
    return _parse_header(_view(blob), _check_max_pixels(max_pixels))


def unpack(blob: Blob, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Header, list[bytes]]:
    """Validates a whole container and returns ``(header, streams)``.

    Checks, in order: magic, version, header length, header CRC-32, field values, the pixel
    cap ``height * width <= max_pixels``, the latent shape, the total length (truncated data and
    trailing bytes are reported distinctly) and the payload CRC-32. Raises :class:`FormatError`
    saying what is wrong; ``TypeError`` for inputs other than bytes, bytearray or memoryview.
    """
    view = _view(blob)
    header = _parse_header(view, _check_max_pixels(max_pixels))
    start, total = header.header_size, header.total_size
    if len(view) < total:
        raise FormatError(
            f"truncated .fcc data: expected {total} bytes (header {start} + streams "
            f"{header.payload_size}), got {len(view)} ({total - len(view)} missing)"
        )
    if len(view) > total:
        extra = len(view) - total
        raise FormatError(
            f"{extra} unexpected trailing byte{'s' if extra != 1 else ''} after the last stream "
            f"(expected {total} bytes, got {len(view)}): data appended, or files concatenated"
        )
    payload = view[start:total]
    actual = zlib.crc32(payload)
    if actual != header.payload_crc:
        raise FormatError(
            f"corrupt .fcc payload: CRC-32 mismatch (stored {header.payload_crc:08x}, computed "
            f"{actual:08x}); the file is damaged"
        )
    streams, pos = [], start
    for n in header.stream_lengths:
        streams.append(bytes(view[pos : pos + n]))
        pos += n
    return header, streams
