"""The ``.fcc`` container (fastcodec/container.py, spec docs/format.md): roundtrips over a grid of
field values, the exact byte layout, and every validation error with its message.

The helpers at the top (:func:`reseal`, :func:`set_field`) read the byte layout as docs/format.md
documents it, independently of the module, so they double as a check of the spec; the fuzz tests
(tests/test_container_fuzz.py) import them.
"""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest

from fastcodec import container
from fastcodec.container import (
    DEFAULT_MAX_PIXELS,
    EXTENSION,
    MAGIC,
    FormatError,
    Header,
    channel_ranges,
    pack,
    read_header,
    unpack,
)

# --------------------------------------------------------------------------------------------
# Helpers: the documented layout (offsets relative to L = model id length)
# --------------------------------------------------------------------------------------------

#: field -> (offset from the start when L = 0, struct format, shifts with L)
FIELDS = {
    "version": (8, "<B", False),
    "flags": (9, "<B", False),
    "id_len": (10, "<B", False),
    "weights_hash": (11, "<8s", True),
    "quality": (19, "<H", True),
    "height": (21, "<I", True),
    "width": (25, "<I", True),
    "layout": (29, "<B", True),
    "M": (30, "<H", True),
    "h": (32, "<I", True),
    "w": (36, "<I", True),
    "S": (40, "<H", True),
}


def layout_of(blob: bytes) -> tuple[int, int, int]:
    """``(L, S, header_end)`` read from the documented offsets (no validation)."""
    id_len = blob[10]
    num_streams = struct.unpack_from("<H", blob, 40 + id_len)[0]
    return id_len, num_streams, 50 + id_len + 4 * num_streams


def field_offset(blob: bytes, name: str) -> int:
    offset, _, shifts = FIELDS[name]
    return offset + (blob[10] if shifts else 0)


def reseal(blob: bytes) -> bytes:
    """Recomputes both CRCs of a (mutated) container so that it passes the CRC checks: the
    payload CRC over every byte after the header, then the header CRC. Blobs too short to hold
    the header their fields declare are returned unchanged."""
    b = bytearray(blob)
    if len(b) <= 10 or len(b) < 42 + b[10]:
        return bytes(b)
    end = layout_of(b)[2]
    if len(b) < end:
        return bytes(b)
    struct.pack_into("<I", b, end - 8, zlib.crc32(bytes(b[end:])))
    struct.pack_into("<I", b, end - 4, zlib.crc32(bytes(b[: end - 4])))
    return bytes(b)


def set_field(blob: bytes, name: str, value, *, seal: bool = True) -> bytes:
    """``blob`` with one header field overwritten (and the CRCs recomputed when ``seal``)."""
    _, fmt, _ = FIELDS[name]
    b = bytearray(blob)
    struct.pack_into(fmt, b, field_offset(blob, name), value)
    return reseal(bytes(b)) if seal else bytes(b)


def set_length(blob: bytes, index: int, value: int, *, seal: bool = True) -> bytes:
    b = bytearray(blob)
    struct.pack_into("<I", b, 42 + blob[10] + 4 * index, value)
    return reseal(bytes(b)) if seal else bytes(b)


def latent(height: int, width: int, M: int = 128) -> tuple[int, int, int]:
    return (M, -(-height // 16), -(-width // 16))


def make(streams=(b"\x07" * 40, b"\x09" * 36), **fields) -> bytes:
    """A valid container (defaults: 17x33 RGB, 128 channels, quality 4.25)."""
    args = dict(model_id="fcf64-v1", weights_hash=bytes(range(8)), quality=4.25, height=17,
                width=33, layout="rgb")
    args.update(fields)
    args.setdefault("latent_shape", latent(args["height"], args["width"]))
    return pack(streams=streams, **args)


# --------------------------------------------------------------------------------------------
# Roundtrips
# --------------------------------------------------------------------------------------------

SIZES = [(1, 1), (16, 16), (17, 33), (24, 40), (33, 17), (1, 4097), (768, 512)]
STREAM_SETS = [(1, 1), (3, 1), (128, 1), (128, 2), (128, 7), (128, 128), (65535, 3)]  # (M, S)


@pytest.mark.parametrize("height,width", SIZES)
@pytest.mark.parametrize("layout", ["rgb", "gray", "gray1"])
@pytest.mark.parametrize("M,S", STREAM_SETS)
def test_roundtrip_grid(height, width, layout, M, S):
    rng = np.random.default_rng(height * 7919 + width * 31 + M + S)
    streams = [rng.bytes(int(rng.integers(0, 80))) for _ in range(S)]
    shape = latent(height, width, M)
    blob = pack(model_id="fcf64-v1", weights_hash=rng.bytes(8), quality=4.25, height=height,
                width=width, layout=layout, latent_shape=shape, streams=streams)
    assert isinstance(blob, bytes) and blob.startswith(MAGIC)
    header, out = unpack(blob)
    assert out == streams and all(type(s) is bytes for s in out)
    assert (header.version, header.height, header.width, header.layout) == (1, height, width,
                                                                            layout)
    assert header.latent_shape == shape and header.stream_lengths == tuple(map(len, streams))
    assert header.payload_crc == zlib.crc32(b"".join(streams))
    assert header.header_size == 50 + len("fcf64-v1") + 4 * S
    assert header.total_size == len(blob)
    assert header.pad_bottom == 16 * shape[1] - height and 0 <= header.pad_bottom < 16
    assert header.pad_right == 16 * shape[2] - width and 0 <= header.pad_right < 16
    assert read_header(blob[: header.header_size]) == header
    assert header.channel_ranges() == channel_ranges(M, S)


@pytest.mark.parametrize("model_id", ["a", "fcf64-v1", "x" * 32, "!~09AZaz_.-+"])
@pytest.mark.parametrize("quality", [1.0, 1.01, 4.25, 6.0, 99.99, 100.0, 3])
def test_roundtrip_ids_and_qualities(model_id, quality):
    h = 1000 + len(model_id)
    weights = bytes([255, 0, 1, 128, 127, 254, 2, 3])
    blob = make(model_id=model_id, quality=quality, weights_hash=weights, height=h)
    header, _ = unpack(blob)
    assert header.model_id == model_id and header.weights_hash == weights
    assert header.quality == quality and isinstance(header.quality, float)
    assert len(blob) == 50 + len(model_id) + 8 + 76


def test_quality_is_stored_in_hundredths():
    blob = make(quality=np.float32(4.1))  # float noise of a non-binary fraction is absorbed
    assert struct.unpack_from("<H", blob, field_offset(blob, "quality"))[0] == 410
    assert read_header(blob).quality == 4.1


def test_empty_streams_are_allowed_by_the_container():
    blob = make(streams=[b"", b"abc", b""])
    header, streams = unpack(blob)
    assert streams == [b"", b"abc", b""] and header.stream_lengths == (0, 3, 0)
    assert unpack(make(streams=[b""]))[1] == [b""]


def test_byte_layout_is_frozen():
    """A golden vector: if this changes, the format changed and FORMAT_VERSION must be bumped
    (docs/format.md, versioning)."""
    blob = pack(model_id="fcf64-v1", weights_hash=bytes(range(8)), quality=4.0, height=17,
                width=33, layout="gray", latent_shape=(4, 2, 3),
                streams=[b"\x00" * 32, b"\x01" * 33])
    assert blob.hex() == (
        "894643430d0a1a0a" "01" "00" "08" "66636636342d7631" "0001020304050607" "9001"
        "11000000" "21000000" "01" "0400" "02000000" "03000000" "0200" "20000000" "21000000"
        "e5ad0450" "9ec6b7ed" + "00" * 32 + "01" * 33
    )
    assert MAGIC == b"\x89FCC\r\n\x1a\n" and EXTENSION == ".fcc"
    assert container.MIME_TYPE == "image/x.fastcodec"
    assert container.header_size(8, 2) == 66 == read_header(blob).header_size
    assert DEFAULT_MAX_PIXELS == 2**28 and container.FORMAT_VERSION == 1


def test_helpers_follow_the_module():
    """The test helpers' reading of the layout agrees with the module's."""
    blob = make(model_id="abc", streams=[b"1", b"22", b"333"])
    assert layout_of(blob) == (3, 3, 50 + 3 + 12)
    assert reseal(blob) == blob
    assert read_header(set_field(blob, "quality", 600)).quality == 6.0
    assert read_header(set_field(blob, "layout", 2)).layout == "gray1"


def test_to_dict_is_json_friendly():
    header = read_header(make())
    d = json.loads(json.dumps(header.to_dict()))
    assert d["weights_hash"] == "0001020304050607" and d["quality"] == 4.25
    assert d["latent_shape"] == [128, 2, 3] and d["stream_lengths"] == [40, 36]
    assert (d["pad_bottom"], d["pad_right"]) == (15, 15)
    assert d["total_bytes"] == len(make()) and d["payload_crc"] == f"{header.payload_crc:08x}"
    assert set(d) >= {"version", "model_id", "height", "width", "layout", "num_streams"}


def test_header_is_frozen():
    header = read_header(make())
    with pytest.raises(AttributeError):
        header.height = 3  # type: ignore[misc]
    assert isinstance(header, Header) and hash(header) == hash(read_header(make()))


@pytest.mark.parametrize("kind", ["bytearray", "memoryview", "slice", "uint8_2d", "int32"])
def test_bytes_like_inputs(kind):
    blob = make(streams=[b"\x07" * 40, b"\x09" * 38])  # 144 bytes: a whole number of int32s
    if kind == "bytearray":
        data = bytearray(blob)
    elif kind == "memoryview":
        data = memoryview(blob)
    elif kind == "slice":
        data = memoryview(b"junk" + blob + b"junk")[4:-4]
    elif kind == "uint8_2d":
        data = memoryview(np.frombuffer(blob, np.uint8).reshape(-1, 4))
    else:  # a non-byte format is read as its raw bytes
        data = memoryview(np.frombuffer(blob, np.int32))
    header, streams = unpack(data)
    assert (header, streams) == unpack(blob)
    assert read_header(data) == header


def test_streams_are_copies():
    data = bytearray(make())
    _, streams = unpack(data)
    data[-1] ^= 0xFF
    assert streams[-1][-1] == 0x09


def test_pack_accepts_bytes_like_streams():
    streams = [bytearray(b"ab"), memoryview(b"cde"), np.arange(3, dtype=np.int16).data]
    _, out = unpack(make(streams=streams, latent_shape=(3, 2, 3)))
    assert out == [b"ab", b"cde", np.arange(3, dtype=np.int16).tobytes()]


@pytest.mark.parametrize("bad", ["text", 123, None, [1, 2], np.zeros(4, np.uint8)])
def test_non_bytes_input_is_a_type_error(bad):
    with pytest.raises(TypeError, match="bytes, bytearray or memoryview"):
        unpack(bad)
    with pytest.raises(TypeError):
        read_header(bad)


def test_strided_memoryview_is_read_in_order():
    blob = make()
    doubled = np.repeat(np.frombuffer(blob, np.uint8), 2)[::2]
    assert not memoryview(doubled).c_contiguous
    assert unpack(memoryview(doubled)) == unpack(blob)


def test_channel_ranges():
    for M in (1, 2, 7, 128, 129):
        for S in sorted({s for s in (1, 2, 3, M // 2, M) if 1 <= s <= M}):
            r = channel_ranges(M, S)
            assert len(r) == S and r[0][0] == 0 and r[-1][1] == M
            assert all(a[1] == b[0] for a, b in zip(r, r[1:]))
            sizes = [b - a for a, b in r]
            assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
    assert channel_ranges(128, 3) == [(0, 42), (42, 85), (85, 128)]
    assert channel_ranges(np.int64(4), 2) == [(0, 2), (2, 4)]
    for M, S in ((0, 1), (4, 0), (4, 5), (-1, -1)):
        with pytest.raises(ValueError, match="1 <= S <= M"):
            channel_ranges(M, S)
    with pytest.raises(TypeError):
        channel_ranges(4.0, 2)


# --------------------------------------------------------------------------------------------
# pack: argument errors (ValueError / TypeError, not FormatError-specific)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides,exc,match",
    [
        (dict(model_id=""), ValueError, "1..32 characters"),
        (dict(model_id="x" * 33), ValueError, "1..32 characters"),
        (dict(model_id="with space"), ValueError, "printable ASCII"),
        (dict(model_id="modèle"), ValueError, "printable ASCII"),
        (dict(model_id=b"fcf64"), TypeError, "model_id must be a str"),
        (dict(weights_hash=b"1234567"), ValueError, "8 bytes"),
        (dict(weights_hash="12345678"), TypeError, "weights_hash must be bytes"),
        (dict(quality=0.99), ValueError, r"\[1, 100\]"),
        (dict(quality=100.01), ValueError, r"\[1, 100\]"),
        (dict(quality=float("nan")), ValueError, r"\[1, 100\]"),
        (dict(quality=4.125), ValueError, "multiple of 0.01"),
        (dict(quality="4"), TypeError, "quality must be a number"),
        (dict(quality=True), TypeError, "quality must be a number"),
        (dict(height=0, latent_shape=(128, 0, 3)), ValueError, "height must be in"),
        (dict(width=2**32, latent_shape=(128, 2, 2**28)), ValueError, "width must be in"),
        (dict(height=17.0), TypeError, "height must be an integer"),
        (dict(layout="rgba"), ValueError, "layout must be one of"),
        (dict(latent_shape=(128, 2)), ValueError, r"\(M, h, w\)"),
        (dict(latent_shape=(128, 1, 3)), ValueError, "expected \\(M, 2, 3\\)"),
        (dict(latent_shape=(128, 2, 2)), ValueError, "does not match a 17x33 image"),
        (dict(latent_shape=(0, 2, 3)), ValueError, "latent channels M"),
        (dict(latent_shape=(65536, 2, 3)), ValueError, "latent channels M"),
        (dict(streams=[]), ValueError, "need 1..M=128 streams, got 0"),
        (dict(streams=[b""] * 3, latent_shape=(2, 2, 3)), ValueError, "need 1..M=2 streams"),
        (dict(streams=b"abc"), TypeError, "not a single bytes object"),
        (dict(streams=[b"a", "b"]), TypeError, r"streams\[1\] must be bytes"),
    ],
)
def test_pack_rejects_bad_arguments(overrides, exc, match):
    with pytest.raises(exc, match=match):
        make(**overrides)


# --------------------------------------------------------------------------------------------
# Validation errors, in the order unpack checks them
# --------------------------------------------------------------------------------------------


def test_format_error_is_a_value_error():
    assert issubclass(FormatError, ValueError)
    with pytest.raises(ValueError):
        unpack(b"nope")


def test_empty_input():
    for data in (b"", bytearray(), memoryview(b"")):
        with pytest.raises(FormatError, match="empty input"):
            unpack(data)


@pytest.mark.parametrize(
    "data,match",
    [
        (b"hello world, this is text", r"bad magic 68 65 6c 6c 6f 20 77 6f$"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "looks like a PNG image"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "looks like a JPEG image"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "looks like a WebP image"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00", "looks like an AVIF image"),
        (b"GIF89a\x01\x00\x01\x00", "looks like a GIF image"),
        (b"PK\x03\x04\x14\x00\x00\x00", "ZIP archive"),
        (b"\x00", "bad magic 00$"),
    ],
)
def test_bad_magic(data, match):
    with pytest.raises(FormatError, match="not an .fcc file: bad magic"):
        unpack(data)
    with pytest.raises(FormatError, match=match):
        read_header(data)


def test_text_mode_mangling_is_recognised():
    blob = make()
    crlf_to_lf = blob.replace(b"\r\n", b"\n")
    lf_to_crlf = blob.replace(b"\r\n", b"\0").replace(b"\n", b"\r\n").replace(b"\0", b"\r\n")
    naive_lf_to_crlf = blob.replace(b"\n", b"\r\n")
    seven_bit = bytes(b & 0x7F for b in blob)
    for data in (crlf_to_lf, lf_to_crlf, naive_lf_to_crlf):
        with pytest.raises(FormatError, match="line endings were converted"):
            unpack(data)
    with pytest.raises(FormatError, match="lost the high bit"):
        unpack(seven_bit)


def test_truncation_anywhere_in_the_header():
    blob = make(model_id="abcdefghij", streams=[b"x" * 9] * 5)
    end = layout_of(blob)[2]
    for cut in range(1, end):
        with pytest.raises(FormatError, match=r"truncated \.fcc data: the header.* needs (\d+) "
                                              rf"bytes, only {cut} present"):
            read_header(blob[:cut])
        with pytest.raises(FormatError, match="truncated"):
            unpack(blob[:cut])
    assert read_header(blob[:end]).num_streams == 5


def test_truncated_header_messages_name_the_sizes():
    blob = make(streams=[b"a"] * 3)
    with pytest.raises(FormatError, match=r"needs 11 bytes, only 9 present \(2 missing\)"):
        read_header(blob[:9])
    with pytest.raises(FormatError, match=r"needs 50 bytes, only 30 present"):
        read_header(blob[:30])
    with pytest.raises(FormatError, match=r"declares 3 streams, unless that count is "
                                          r"damaged\) needs 70 bytes, only 61"):
        read_header(blob[:61])


@pytest.mark.parametrize("version", [0, 2, 255])
def test_unsupported_version(version):
    blob = make()
    for data in (set_field(blob, "version", version, seal=False),
                 set_field(blob, "version", version)):
        with pytest.raises(FormatError, match=rf"unsupported .fcc format version {version}: "
                                              r"this fastcodec reads version 1 only"):
            unpack(data)
    # the version is checked before the rest of the header has to be present
    with pytest.raises(FormatError, match="version"):
        read_header(set_field(blob, "version", version, seal=False)[:12])
    if version > 1:
        with pytest.raises(FormatError, match="a newer fastcodec may read it"):
            unpack(set_field(blob, "version", version))


@pytest.mark.parametrize("id_len", [0, 33, 255])
def test_model_id_length_out_of_range(id_len):
    with pytest.raises(FormatError, match=rf"corrupt header: model id length {id_len} is "
                                          r"outside 1\.\.32"):
        unpack(set_field(make(), "id_len", id_len, seal=False))


def test_header_crc_mismatch():
    blob = make()
    end = layout_of(blob)[2]
    for pos in range(8, end):  # every header byte after the magic
        if pos in (8, 10) or pos == field_offset(blob, "S") or pos == field_offset(blob, "S") + 1:
            continue  # version / model id length / stream count have their own messages
        data = bytearray(blob)
        data[pos] ^= 0x10
        with pytest.raises(FormatError, match=r"corrupt .fcc header: CRC-32 mismatch \(stored "
                                              r"[0-9a-f]{8}, computed [0-9a-f]{8}\)"):
            unpack(bytes(data))


def test_header_crc_is_checked_before_the_fields():
    bad = set_field(make(), "layout", 9, seal=False)
    with pytest.raises(FormatError, match="CRC-32 mismatch"):
        read_header(bad)
    with pytest.raises(FormatError, match="layout code 9"):
        read_header(reseal(bad))


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("flags", 1, r"unsupported .fcc flags 0x01: version 1 defines no flags"),
        ("flags", 0x80, r"flags 0x80"),
        ("layout", 3, r"unknown layout code 3 \(known: 0 rgb, 1 gray, 2 gray1\)"),
        ("M", 0, r"0 latent channels"),
        ("S", 0, r"0 streams for 128 latent channels \(need 1\.\.128\)"),
        ("quality", 99, r"quality 0\.99 is outside 1\.00\.\.100\.00"),
        ("quality", 0, r"quality 0\.00 is outside"),
        ("quality", 10001, r"quality 100\.01 is outside"),
        ("height", 0, r"image size 0x33 is empty"),
        ("width", 0, r"image size 17x0 is empty"),
        ("h", 3, r"latent shape \(128, 3, 3\) does not match a 17x33 image \(expected "
                 r"\(128, 2, 3\)\)"),
        ("w", 0, r"latent shape \(128, 2, 0\) does not match"),
        ("M", 3, r"valid"),  # M=3 with 2 streams is a valid header (payload checks follow)
    ],
)
def test_field_sanity(field, value, match):
    data = set_field(make(), field, value)
    if match == "valid":
        assert read_header(data).latent_shape == (3, 2, 3)
        return
    with pytest.raises(FormatError, match=match):
        read_header(data)
    with pytest.raises(FormatError, match=match):
        unpack(data)


def test_more_streams_than_channels():
    blob = make(streams=[b"a", b"b", b"c"], latent_shape=(4, 2, 3))
    with pytest.raises(FormatError, match=r"3 streams for 2 latent channels \(need 1\.\.2\)"):
        unpack(set_field(blob, "M", 2))


@pytest.mark.parametrize("model_id", [b"fcf 64", b"fcf\xff64", b"fcf\x0064", b"\x7f"])
def test_model_id_must_be_printable_ascii(model_id):
    blob = bytearray(make(model_id="x" * len(model_id)))
    blob[11 : 11 + len(model_id)] = model_id
    with pytest.raises(FormatError, match="invalid .fcc header: model id"):
        unpack(reseal(bytes(blob)))


def test_dimension_cap():
    big = make(height=16385, width=16384, streams=[b"s"])  # 2**28 + 16384 pixels
    with pytest.raises(FormatError, match=r"16385x16384 = 268451840 pixels, above the limit of "
                                          r"268435456 pixels \(max_pixels\); if the file is "
                                          r"trusted, pass max_pixels=268451840 or more"):
        unpack(big)
    header, _ = unpack(big, max_pixels=2**29)
    assert header.height * header.width > DEFAULT_MAX_PIXELS
    assert read_header(make(height=16384, width=16384)).height == 16384  # exactly the cap
    with pytest.raises(FormatError, match="above the limit of 560 pixels"):
        read_header(make(), max_pixels=560)
    assert read_header(make(), max_pixels=561).height == 17
    huge = set_field(set_field(set_field(set_field(make(), "height", 2**32 - 1), "width",
                                         2**32 - 1), "h", 2**28), "w", 2**28)
    with pytest.raises(FormatError, match="4294967295x4294967295"):
        unpack(huge)
    for bad in (0, -5):
        with pytest.raises(ValueError, match="max_pixels must be positive"):
            unpack(make(), max_pixels=bad)
    with pytest.raises(TypeError):
        unpack(make(), max_pixels=1e9)


def test_dimension_cap_comes_before_the_latent_shape():
    data = set_field(set_field(make(), "height", 2**31), "width", 2**31)
    with pytest.raises(FormatError, match="above the limit"):
        read_header(data)


def test_truncated_payload():
    blob = make()  # header 66 bytes (8-byte id, 2 streams) + 76 payload bytes
    for cut in (1, 2, 35, 75, 76):
        with pytest.raises(FormatError, match=rf"truncated .fcc data: expected 142 bytes \(header "
                                              rf"66 \+ streams 76\), got {142 - cut} \({cut} "
                                              r"missing\)"):
            unpack(blob[:-cut])
        assert read_header(blob[:-cut]) == read_header(blob)  # the header alone is fine


def test_lengths_beyond_the_data_are_not_allocated():
    blob = set_length(make(), 0, 2**32 - 1)
    with pytest.raises(FormatError, match=rf"expected {66 + 2**32 - 1 + 36} bytes .* got 142"):
        unpack(blob)


@pytest.mark.parametrize("extra", [b"\x00", b"junk" * 10])
def test_trailing_bytes(extra):
    n = len(extra)
    with pytest.raises(FormatError, match=rf"{n} unexpected trailing bytes? after the last "
                                          r"stream \(expected 142 bytes, got " + str(142 + n)):
        unpack(make() + extra)
    with pytest.raises(FormatError, match="trailing"):
        unpack(make() + make())  # two files concatenated


def test_payload_crc_mismatch():
    blob = make(streams=[bytes(range(50)), b"z" * 7])
    start = layout_of(blob)[2]
    for pos in range(start, len(blob)):
        data = bytearray(blob)
        data[pos] ^= 1 << (pos % 8)
        with pytest.raises(FormatError, match=r"corrupt .fcc payload: CRC-32 mismatch \(stored "
                                              r"[0-9a-f]{8}, computed [0-9a-f]{8}\)"):
            unpack(bytes(data))
        assert read_header(bytes(data)) == read_header(blob)  # payload CRC: unpack's job


def test_stream_boundaries_moved_and_resealed():
    """Lengths that still add up decode as other streams: the container cannot know, the range
    decoder catches it (see the fuzz tests)."""
    blob = make(streams=[b"a" * 10, b"b" * 6])
    moved = set_length(set_length(blob, 0, 12), 1, 4)
    assert unpack(moved)[1] == [b"a" * 10 + b"bb", b"b" * 4]
    with pytest.raises(FormatError, match="truncated"):
        unpack(set_length(blob, 1, 7))
    with pytest.raises(FormatError, match="1 unexpected trailing byte after"):
        unpack(set_length(blob, 1, 5))
