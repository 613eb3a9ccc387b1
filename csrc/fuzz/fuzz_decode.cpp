// libFuzzer target for the native range coder (csrc/rangecoder).
//
// Build (see tests/test_native_fuzz.py, or CMake with -DFASTCODEC_FUZZ=ON and CXX=clang++):
//   clang++ -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
//     -Icsrc/rangecoder csrc/fuzz/fuzz_decode.cpp csrc/rangecoder/tables.cpp \
//     csrc/rangecoder/coder.cpp csrc/rangecoder/parallel.cpp -o fuzz_decode
//
// Input layout (bytes past the end of the input read as 0):
//   [0]      flags: bits 0-2 rows - 1 (1..8); bit 3 repair the raw stream's framing;
//            bit 4 also run the parallel_for check; bits 5-7 == 7: make the tables invalid
//   [1]      precision - 1 in bits 0-3 (1..16); bits 4-5 extra (ignored) columns of cdfs
//   [2..3]   u = le16; count = u % 2049 when bit 15 of u is set, else u % 67
//   [4]      k = 1 + (b & 7), then k bytes: indexes[i] = pattern[i % k] % rows
//   per row: length selector (255: 2^p bins of width 1, 254: 1 bin, else 1 + b % min(2^p, 64)
//            bins); offset selector (b % 8; kind 5 reads an le32 offset); then, unless the
//            selector was 255 or there is a single bin, one weight byte per bin
//   if invalid: 2 bytes (kind, variant)
//   4 bytes: how to corrupt the encoded stream (kind, le16 position, extra)
//   rest:    (a) decoded as a stream as it is; (b) also the source of the symbols to roundtrip
//
// The bins of a row are 1 + floor(R * cumulative_weight / total_weight) wide (R = 2^p - bins),
// so the derived CDFs are valid (strictly increasing, 0 .. 2^p) unless the invalid mode breaks
// them on purpose, in which case the constructor must throw CoderError.
//
// Checks: no sanitizer report anywhere; decoding any bytes, in one call or in pieces
// (PieceDecoder), either returns or throws CoderError; decode(encode(x)) == x for every int32 x,
// in one call and in pieces; encode is deterministic across parallel_for; invalid
// tables or indexes are rejected.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <vector>

#include "rans.h"

using fastcodec::CdfTables;
using fastcodec::CoderError;

namespace {

constexpr int32_t kI32Min = std::numeric_limits<int32_t>::min();
constexpr int32_t kI32Max = std::numeric_limits<int32_t>::max();

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "fuzz_decode: check failed: %s\n", what);
    std::fflush(stderr);
    std::abort();
}

// Reads the front of the input; past the end it yields zeros.
class Reader {
  public:
    Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
    uint8_t u8() { return pos_ < size_ ? data_[pos_++] : 0; }
    uint16_t u16() {
        const uint16_t lo = u8();
        return static_cast<uint16_t>(lo | (u8() << 8));
    }
    uint32_t u32() {
        const uint32_t lo = u16();
        return lo | (static_cast<uint32_t>(u16()) << 16);
    }
    size_t pos() const { return pos_ < size_ ? pos_ : size_; }

  private:
    const uint8_t* data_;
    size_t size_;
    size_t pos_ = 0;
};

// Cycles over the rest of the input (zeros when there is none).
class Cycler {
  public:
    Cycler(const uint8_t* data, size_t size) : data_(data), size_(size) {}
    uint8_t u8() {
        if (size_ == 0) return 0;
        const uint8_t b = data_[pos_];
        pos_ = (pos_ + 1) % size_;
        return b;
    }
    uint32_t u32() {
        uint32_t v = 0;
        for (int k = 0; k < 4; ++k) v |= static_cast<uint32_t>(u8()) << (8 * k);
        return v;
    }

  private:
    const uint8_t* data_;
    size_t size_;
    size_t pos_ = 0;
};

int32_t clamp_i32(int64_t v) {
    return v < kI32Min ? kI32Min : v > kI32Max ? kI32Max : static_cast<int32_t>(v);
}

struct Row {
    std::vector<int32_t> cdf;
    int32_t offset = 0;
};

Row make_row(Reader& in, int precision) {
    const int64_t total = int64_t{1} << precision;
    const uint8_t lsel = in.u8();
    int64_t bins;
    if (lsel == 255)
        bins = total;  // every bin 1 wide: the longest row there is
    else if (lsel == 254)
        bins = 1;  // escape bin only
    else
        bins = 1 + lsel % (total < 64 ? total : 64);

    Row row;
    const uint8_t osel = in.u8();
    switch (osel % 8) {
        case 0: row.offset = 0; break;
        case 1: row.offset = kI32Min; break;
        case 2: row.offset = kI32Max; break;
        case 3: row.offset = clamp_i32(int64_t{kI32Max} - bins + 1); break;  // last regular = max
        case 4: row.offset = kI32Min + (osel >> 3); break;
        case 5: row.offset = static_cast<int32_t>(in.u32()); break;
        case 6: row.offset = static_cast<int8_t>(osel); break;
        default: row.offset = static_cast<int32_t>(-bins / 2); break;
    }

    row.cdf.assign(static_cast<size_t>(bins + 1), 0);
    if (lsel == 255 || bins == 1) {
        for (int64_t j = 0; j <= bins; ++j) row.cdf[j] = static_cast<int32_t>(j * (total / bins));
    } else {
        std::vector<int64_t> w(static_cast<size_t>(bins));
        int64_t sum = 0;
        for (auto& x : w) sum += (x = 1 + in.u8());
        const int64_t spare = total - bins;
        int64_t cum = 0;
        for (int64_t j = 0; j < bins; ++j) {
            cum += w[j];
            row.cdf[j + 1] = static_cast<int32_t>(j + 1 + spare * cum / sum);
        }
    }
    return row;
}

// Owns the flat arrays handed to CdfTables.
struct TableSpec {
    std::vector<int32_t> cdfs, lengths, offsets;
    int64_t num_rows = 0, stride = 0, num_lengths = 0, num_offsets = 0;
    int precision = 1;

    std::unique_ptr<CdfTables> build() const {
        // Exact-size copies, so ASan sees any read past what the constructor was told.
        std::vector<int32_t> c(cdfs), l(lengths), o(offsets);
        return std::make_unique<CdfTables>(c.data(), num_rows, stride, l.data(), num_lengths,
                                           o.data(), num_offsets, precision);
    }
};

// Breaks a valid spec so that it is certainly invalid; returns false for kinds that keep the
// tables valid (the caller then breaks the indexes instead).
bool make_invalid(TableSpec& s, uint8_t kind, uint8_t variant) {
    const int64_t r = variant % s.num_rows;
    int32_t* row = s.cdfs.data() + r * s.stride;
    const int64_t len = s.lengths[r];
    const int32_t total = int32_t{1} << s.precision;
    switch (kind % 12) {
        case 0: row[0] = (variant & 1) ? 1 : -1; return true;
        case 1: row[1] = row[0]; return true;                             // empty first bin
        case 2: row[len - 1] = (variant & 1) ? total + 1 : total - 1; return true;
        case 3: row[len - 1] = kI32Max; return true;
        case 4: row[len / 2] = kI32Min; return true;                     // negative / decreasing
        case 5: s.lengths[r] = static_cast<int32_t>(s.stride + 1 + (variant >> 4)); return true;
        case 6: {
            static const int32_t bad[] = {1, 0, -1, kI32Min};
            s.lengths[r] = bad[(variant >> 1) % 4];
            return true;
        }
        case 7: {
            static const int bad[] = {0, -1, 17, 31, 32, 64, kI32Min, kI32Max};
            s.precision = bad[(variant >> 1) % 8];
            return true;
        }
        case 8: s.num_lengths += (variant & 1) ? 1 : -1; return true;  // arrays hold rows + 1
        case 9: s.num_offsets += (variant & 1) ? 1 : -1; return true;
        case 10:
            if (len < 3) {
                row[1] = row[0];
            } else {
                const int64_t j = 1 + (variant % (len - 2));  // swap two neighbours
                const int32_t t = row[j];
                row[j] = row[j + 1];
                row[j + 1] = t;
            }
            return true;
        default: return false;
    }
}

std::vector<int32_t> decode(const CdfTables& t, const std::vector<uint8_t>& bytes,
                            const std::vector<int32_t>& idx) {
    std::vector<int32_t> out(idx.size());
    fastcodec::decode_stream(t, bytes.data(), bytes.size(), idx.data(),
                             static_cast<int64_t>(idx.size()), out.data());
    return out;
}

// Decodes bytes that need not be a valid stream: it must return or throw CoderError.
// The same stream through the piece decoder, in pieces of 1, 2, ..., step, 1, 2, ... symbols;
// *clean says whether it ended where the encoder began.
std::vector<int32_t> decode_in_pieces(const CdfTables& t, const std::vector<uint8_t>& bytes,
                                      const std::vector<int32_t>& idx, int step, bool* clean) {
    fastcodec::PieceDecoder dec(bytes.data(), bytes.size());
    std::vector<int32_t> out(idx.size());
    size_t i = 0;
    for (int k = 0; i < idx.size(); ++k) {
        const size_t n = std::min(idx.size() - i, static_cast<size_t>(1 + k % step));
        dec.decode(t, idx.data() + i, static_cast<int64_t>(n), out.data() + i);
        i += n;
    }
    *clean = dec.at_clean_end();
    return out;
}

void decode_any(const CdfTables& t, const std::vector<uint8_t>& bytes,
                const std::vector<int32_t>& idx) {
    try {
        (void)decode(t, bytes, idx);
    } catch (const CoderError&) {
    }
    try {
        bool clean = false;
        (void)decode_in_pieces(t, bytes, idx, 3, &clean);
    } catch (const CoderError&) {
    }
}

int32_t make_symbol(Cycler& src, const fastcodec::RowInfo& row) {
    const uint8_t sel = src.u8();
    const int64_t off = row.offset, esc = row.escape_bin;
    switch (sel % 16) {
        case 12: return kI32Min;
        case 13: return kI32Max;
        case 14: return static_cast<int32_t>(src.u32());
        case 15: return (sel & 16) ? kI32Min + src.u8() : kI32Max - src.u8();
        case 10: return clamp_i32(off - 1 - src.u8() % 4);   // just below the row
        case 11: return clamp_i32(off + esc + src.u8() % 4);  // just above the row
        default: {
            if (esc == 0) return clamp_i32(off + static_cast<int8_t>(src.u8()));
            return clamp_i32(off + src.u8() % esc);  // regular (clamped: an escape instead)
        }
    }
}

void check_parallel(const CdfTables& t, const std::vector<int32_t>& sym,
                    const std::vector<int32_t>& idx, const std::vector<uint8_t>& serial) {
    constexpr int64_t kJobs = 3;
    const int64_t n = static_cast<int64_t>(sym.size());
    std::vector<std::vector<uint8_t>> streams(kJobs);
    fastcodec::parallel_for(kJobs, 2, [&](int64_t b) {
        streams[b] = fastcodec::encode_stream(t, sym.data(), idx.data(), n);
    });
    for (const auto& s : streams)
        if (s != serial) fail("parallel_for encode differs from the serial encode");

    // Job 1 gets a stream too short to hold the coder state: its error must come back.
    streams[1].resize(fastcodec::kStreamTrailerBytes - 1);
    std::vector<int32_t> out(static_cast<size_t>(kJobs * n));
    bool threw = false;
    try {
        fastcodec::parallel_for(kJobs, 2, [&](int64_t b) {
            fastcodec::decode_stream(t, streams[b].data(), streams[b].size(), idx.data(), n,
                                     out.data() + b * n);
        });
    } catch (const CoderError&) {
        threw = true;
    }
    if (!threw) fail("parallel_for lost a CoderError");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Reader in(data, size);
    const uint8_t flags = in.u8();
    const uint8_t pbyte = in.u8();
    const int num_rows = 1 + (flags & 7);
    const bool repair = flags & 8;
    const bool parallel = flags & 16;
    const bool invalid = (flags >> 5) == 7;
    const int precision = 1 + (pbyte & 15);
    const int pad = (pbyte >> 4) & 3;
    const uint16_t count_bits = in.u16();
    const int64_t count = (count_bits & 0x8000) ? count_bits % 2049 : count_bits % 67;

    std::vector<uint8_t> pattern(1 + (in.u8() & 7));
    for (auto& b : pattern) b = in.u8();

    std::vector<Row> rows;
    int64_t max_len = 0;
    for (int r = 0; r < num_rows; ++r) {
        rows.push_back(make_row(in, precision));
        if (static_cast<int64_t>(rows.back().cdf.size()) > max_len) max_len = rows.back().cdf.size();
    }

    TableSpec spec;
    spec.num_rows = spec.num_lengths = spec.num_offsets = num_rows;
    spec.stride = max_len + pad;
    spec.precision = precision;
    // Unused columns hold garbage that must be ignored.
    spec.cdfs.assign(static_cast<size_t>(num_rows * spec.stride), -7);
    for (int r = 0; r < num_rows; ++r) {
        std::memcpy(spec.cdfs.data() + r * spec.stride, rows[r].cdf.data(),
                    rows[r].cdf.size() * sizeof(int32_t));
        spec.lengths.push_back(static_cast<int32_t>(rows[r].cdf.size()));
        spec.offsets.push_back(rows[r].offset);
    }
    spec.lengths.push_back(3);  // one spare entry, for the "more lengths than rows" case
    spec.offsets.push_back(0);

    std::vector<int32_t> idx(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i)
        idx[i] = pattern[i % static_cast<int64_t>(pattern.size())] % num_rows;

    bool bad_indexes = false;
    if (invalid) {
        const uint8_t kind = in.u8(), variant = in.u8();
        if (make_invalid(spec, kind, variant)) {
            try {
                (void)spec.build();
            } catch (const CoderError&) {
                return 0;
            }
            fail("invalid tables were accepted");
        }
        bad_indexes = true;
        static const int32_t bad[] = {-1, kI32Min, kI32Max, 8};
        const int32_t v = bad[variant % 4] == 8 ? num_rows : bad[variant % 4];
        if (count == 0) idx.push_back(v); else idx[static_cast<size_t>(variant % count)] = v;
    }

    std::unique_ptr<CdfTables> tables;
    try {
        tables = spec.build();
    } catch (const CoderError& e) {
        std::fprintf(stderr, "derived tables rejected: %s\n", e.what());
        fail("valid tables were rejected");
    }
    const CdfTables& t = *tables;
    if (t.num_rows() != num_rows || t.precision() != precision) fail("table shape");

    try {
        t.check_indexes(idx.data(), static_cast<int64_t>(idx.size()));
        if (bad_indexes) fail("an index outside the rows was accepted");
    } catch (const CoderError&) {
        if (!bad_indexes) fail("valid indexes were rejected");
        return 0;
    }

    const uint8_t mut_kind = in.u8();
    const uint16_t mut_pos = in.u16();
    const uint8_t mut_extra = in.u8();

    // (a) The rest of the input as a stream, exactly as it is, then (optionally) with framing
    // and coder states forced into range so that the decoder runs through the symbols.
    const size_t rest_at = in.pos();
    std::vector<uint8_t> rest(data + rest_at, data + size);
    decode_any(t, rest, idx);
    if (repair && rest.size() >= fastcodec::kStreamTrailerBytes) {
        std::vector<uint8_t> fixed(rest);
        fixed.resize(fastcodec::kStreamTrailerBytes +
                     (fixed.size() - fastcodec::kStreamTrailerBytes) / 4 * 4);
        uint8_t* trailer = fixed.data() + fixed.size() - fastcodec::kStreamTrailerBytes;
        for (int k = 0; k < fastcodec::kLanes; ++k) {
            trailer[8 * k + 3] |= 0x80;  // >= 2^31
            trailer[8 * k + 7] &= 0x7f;  // < 2^63
        }
        decode_any(t, fixed, idx);
    }

    // (b) Roundtrip of symbols derived from the rest of the input.
    Cycler src(rest.data(), rest.size());
    std::vector<int32_t> sym(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) sym[i] = make_symbol(src, t.row(idx[i]));
    const std::vector<uint8_t> enc = fastcodec::encode_stream(t, sym.data(), idx.data(), count);
    if (enc.size() < fastcodec::kStreamTrailerBytes ||
        (enc.size() - fastcodec::kStreamTrailerBytes) % 4 != 0)
        fail("encoded stream has a malformed length");
    std::vector<int32_t> back;
    try {
        back = decode(t, enc, idx);
    } catch (const CoderError& e) {
        std::fprintf(stderr, "decode of a fresh stream threw: %s\n", e.what());
        fail("decode(encode(x)) threw");
    }
    if (back != sym) {
        for (size_t i = 0; i < sym.size(); ++i)
            if (back[i] != sym[i]) {
                std::fprintf(stderr, "symbol %zu (row %d): encoded %d, decoded %d\n", i, idx[i],
                             sym[i], back[i]);
                break;
            }
        fail("decode(encode(x)) != x");
    }
    if (fastcodec::encode_stream(t, sym.data(), idx.data(), count) != enc)
        fail("encode is not deterministic");
    try {
        bool clean = false;
        if (decode_in_pieces(t, enc, idx, 1 + mut_extra % 7, &clean) != sym)
            fail("decoding in pieces != x");
        if (!clean) fail("decoding in pieces did not end where the encoder began");
    } catch (const CoderError& e) {
        std::fprintf(stderr, "piece decode of a fresh stream threw: %s\n", e.what());
        fail("decoding in pieces threw");
    }

    // (c) The fresh stream, damaged: decode must return or throw CoderError.
    std::vector<uint8_t> bad(enc);
    switch (mut_kind % 6) {
        case 0: bad[mut_pos % bad.size()] ^= static_cast<uint8_t>(1u << (mut_extra & 7)); break;
        case 1: bad.resize(bad.size() - 1 - mut_pos % bad.size()); break;  // truncated
        case 2: bad.erase(bad.begin(), bad.begin() + 4 * (1 + mut_extra % 2)); break;
        case 3: bad.insert(bad.begin() + 4 * (mut_pos % (bad.size() / 4)), 4, mut_extra); break;
        case 4: bad[mut_pos % bad.size()] = mut_extra; break;
        default: {
            // Right bytes, wrong symbol count: one fewer and one more.
            if (count > 0) {
                std::vector<int32_t> fewer(idx.begin(), idx.end() - 1);
                decode_any(t, enc, fewer);
            }
            std::vector<int32_t> more(idx);
            more.push_back(idx.empty() ? 0 : idx[mut_pos % idx.size()]);
            decode_any(t, enc, more);
            break;
        }
    }
    decode_any(t, bad, idx);

    if (parallel) check_parallel(t, sym, idx, enc);
    return 0;
}
