// Hot loops of the interleaved rANS coder: encode_stream and decode_stream.
//
// Arithmetic (p = precision, M = 2^p, L = 2^31, bin [start, start+freq) of M):
//   encode: if x >= freq * 2^(63-p): emit low 32 bits, x >>= 32;  x = (x / freq) * M + x % freq + start
//   decode: slot = x % M; find bin; x = freq * (x / M) + slot - start;  if x < L: x = x << 32 | word
// States stay in [L, 2^63) whatever the words are, so a decoder fed arbitrary bytes never leaves
// its invariants; corruption is detected at the end, when every state must be back at L and every
// word consumed.
#include <cstring>

#include "rans.h"

namespace fastcodec {
namespace {

inline uint64_t mulhi64(uint64_t a, uint64_t b) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(a) * b) >> 64);
}

inline void store_le32(uint8_t* p, uint32_t v) {
    for (int k = 0; k < 4; ++k) p[k] = static_cast<uint8_t>(v >> (8 * k));
}
inline void store_le64(uint8_t* p, uint64_t v) {
    for (int k = 0; k < 8; ++k) p[k] = static_cast<uint8_t>(v >> (8 * k));
}
inline uint32_t load_le32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}
inline uint64_t load_le64(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

// Append-only buffer of renormalisation words.
class WordSink {
  public:
    explicit WordSink(size_t expected) : words_(expected < 64 ? 64 : expected) {}
    // Makes room for n more words.
    inline void reserve(size_t n) {
        if (__builtin_expect(size_ + n > words_.size(), 0)) words_.resize(2 * words_.size() + n);
    }
    // Writes w unconditionally and keeps it only if `keep`: no branch to mispredict. Needs room.
    inline void push_if(uint32_t w, bool keep) {
        words_[size_] = w;
        size_ += keep;
    }
    size_t size() const { return size_; }
    const uint32_t* data() const { return words_.data(); }

  private:
    std::vector<uint32_t> words_;
    size_t size_ = 0;
};

// Pops words from the back of the word region of a stream.
class WordSource {
  public:
    WordSource(const uint8_t* base, size_t num_words) : base_(base), left_(num_words) {}
    // Reads the next word and consumes it only if `take` (branch-free in the common case).
    inline uint32_t pop_if(bool take) {
        if (__builtin_expect(left_ == 0, 0)) {
            exhausted_ |= take;  // truncated or corrupt; reported after the loop
            return 0;
        }
        const uint32_t w = load_le32(base_ + 4 * (left_ - 1));
        left_ -= take;
        return w;
    }
    bool clean_end() const { return left_ == 0 && !exhausted_; }
    bool exhausted() const { return exhausted_; }
    size_t left() const { return left_; }

  private:
    const uint8_t* base_;
    size_t left_;
    bool exhausted_ = false;
};

// Encoder renormalisation: a state at or above x_max sheds its low word before coding.
inline void shed_word(uint64_t& x, uint64_t x_max, WordSink& out) {
    const bool emit = x >= x_max;
    out.push_if(static_cast<uint32_t>(x), emit);
    x = emit ? x >> kWordBits : x;
}

// Decoder renormalisation: a state below L takes in the next word.
inline void take_word(uint64_t& x, WordSource& in) {
    const bool refill = x < kStateLow;
    const uint64_t w = in.pop_if(refill);
    x = refill ? (x << kWordBits) | w : x;
}

inline void put_bin(uint64_t& x, const EncodeBin& bin, WordSink& out) {
    shed_word(x, bin.x_max, out);
    const uint64_t q = mulhi64(x, bin.rcp) >> bin.shift;
    x += bin.bias + q * bin.cmpl;
}

// Raw n bits (1 <= n <= 16) with a uniform distribution.
inline void put_raw(uint64_t& x, uint32_t bits, int n, WordSink& out) {
    shed_word(x, uint64_t{1} << (63 - n), out);
    x = (x << n) | bits;
}

inline uint32_t get_raw(uint64_t& x, int n, WordSource& in) {  // 1 <= n <= 16
    const uint32_t bits = static_cast<uint32_t>(x & ((uint64_t{1} << n) - 1));
    x >>= n;
    take_word(x, in);
    return bits;
}

// Escaped value v = symbol - offset, outside [0, escape_bin): folded to a non-negative integer
// (odd below the table, even above it). Its bit length goes through escape_length_table(), then
// the bits below the leading one go raw.
inline uint64_t fold_escape(int64_t v, int32_t escape_bin) {
    return v < 0 ? static_cast<uint64_t>(-2 * v - 1) : static_cast<uint64_t>(2 * (v - escape_bin));
}

__attribute__((noinline)) void put_escape(uint64_t& x, int64_t v, const RowInfo& row,
                                          WordSink& out) {
    out.reserve(kMaxEscapeBits / kBypassChunkBits + 3);  // raw chunks + length + bin
    const uint64_t folded = fold_escape(v, row.escape_bin);
    int nbits = 0;
    while (nbits < 64 && (folded >> nbits) != 0) ++nbits;
    // Decoder order: bin, bit length, chunk 0 (low bits), chunk 1, ...; the encoder goes backwards.
    const int raw_bits = nbits > 0 ? nbits - 1 : 0;
    const int num_chunks = (raw_bits + kBypassChunkBits - 1) / kBypassChunkBits;
    for (int c = num_chunks - 1; c >= 0; --c) {
        const int lo = c * kBypassChunkBits;
        const int n = (raw_bits - lo < kBypassChunkBits) ? raw_bits - lo : kBypassChunkBits;
        put_raw(x, static_cast<uint32_t>((folded >> lo) & ((uint64_t{1} << n) - 1)), n, out);
    }
    put_bin(x, escape_length_table().row(0).enc[nbits], out);
    put_bin(x, row.enc[row.escape_bin], out);
}

inline void encode_symbol(uint64_t& x, int32_t symbol, const RowInfo& row, WordSink& out) {
    const int64_t v = static_cast<int64_t>(symbol) - row.offset;
    if (__builtin_expect(static_cast<uint64_t>(v) < static_cast<uint64_t>(row.escape_bin), 1))
        put_bin(x, row.enc[v], out);
    else
        put_escape(x, v, row, out);
}

struct DecodeParams {
    int precision;
    uint64_t mask;
    int lut_shift;
    explicit DecodeParams(const CdfTables& t)
        : precision(t.precision()), mask((uint64_t{1} << t.precision()) - 1),
          lut_shift(t.lut_shift()) {}
};

inline uint32_t decode_bin(uint64_t& x, const RowInfo& row, const DecodeParams& dp,
                           WordSource& in) {
    const uint32_t slot = static_cast<uint32_t>(x & dp.mask);
    uint32_t bin = row.lut[slot >> dp.lut_shift];
    while (row.cdf[bin + 1] <= slot) ++bin;
    const uint32_t start = row.cdf[bin];
    const uint32_t freq = row.cdf[bin + 1] - start;
    x = freq * (x >> dp.precision) + slot - start;
    take_word(x, in);
    return bin;
}

__attribute__((noinline)) int32_t get_escape(uint64_t& x, const RowInfo& row, WordSource& in,
                                             bool& corrupt) {
    const CdfTables& lengths = escape_length_table();
    const int nbits = static_cast<int>(decode_bin(x, lengths.row(0), DecodeParams(lengths), in));
    uint64_t folded = 0;
    if (nbits > 0) {
        const int raw_bits = nbits - 1;
        for (int lo = 0; lo < raw_bits; lo += kBypassChunkBits) {
            const int n = (raw_bits - lo < kBypassChunkBits) ? raw_bits - lo : kBypassChunkBits;
            folded |= static_cast<uint64_t>(get_raw(x, n, in)) << lo;
        }
        folded |= uint64_t{1} << raw_bits;
    }
    const int64_t v = (folded & 1) ? -static_cast<int64_t>((folded + 1) / 2)
                                   : static_cast<int64_t>(folded / 2) + row.escape_bin;
    const int64_t symbol = v + row.offset;
    if (symbol < INT32_MIN || symbol > INT32_MAX) {
        corrupt = true;
        return 0;
    }
    return static_cast<int32_t>(symbol);
}

// kCheckTop: some row's regular bins reach past INT32_MAX (offsets near the top of the range).
// The encoder never uses those bins, so decoding one means corrupt data; only tables with such
// rows pay for the test.
template <bool kCheckTop>
inline int32_t decode_symbol(uint64_t& x, const RowInfo& row, const DecodeParams& dp,
                             WordSource& in, bool& corrupt) {
    const uint32_t bin = decode_bin(x, row, dp, in);
    if (__builtin_expect(static_cast<int32_t>(bin) == row.escape_bin, 0))
        return get_escape(x, row, in, corrupt);
    if constexpr (kCheckTop) {
        const int64_t symbol = static_cast<int64_t>(bin) + row.offset;
        corrupt |= symbol > INT32_MAX;
        return static_cast<int32_t>(symbol);
    } else {
        return static_cast<int32_t>(bin) + row.offset;  // cannot overflow for these tables
    }
}

// Decodes count symbols with lanes x[0..3]; returns false if a decoded value was impossible.
template <bool kCheckTop>
bool decode_lanes(const CdfTables& tables, uint64_t* x, WordSource& in, const int32_t* indexes,
                  int64_t count, int32_t* out) {
    const DecodeParams dp(tables);
    const RowInfo* rows = tables.rows();
    uint64_t x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3];
    bool corrupt = false;
    int64_t i = 0;
    for (; i + 4 <= count; i += 4) {
        // A stream that ran out of words is invalid whatever follows: stop early, so bytes that
        // claim a huge latent cost time in proportion to their length, not to the claim.
        if (__builtin_expect((i & 4095) == 0, 0) && in.exhausted()) return !corrupt;
        out[i] = decode_symbol<kCheckTop>(x0, rows[indexes[i]], dp, in, corrupt);
        out[i + 1] = decode_symbol<kCheckTop>(x1, rows[indexes[i + 1]], dp, in, corrupt);
        out[i + 2] = decode_symbol<kCheckTop>(x2, rows[indexes[i + 2]], dp, in, corrupt);
        out[i + 3] = decode_symbol<kCheckTop>(x3, rows[indexes[i + 3]], dp, in, corrupt);
    }
    for (; i < count; ++i) {
        uint64_t& xs = (i & 3) == 0 ? x0 : (i & 3) == 1 ? x1 : x2;
        out[i] = decode_symbol<kCheckTop>(xs, rows[indexes[i]], dp, in, corrupt);
    }
    x[0] = x0, x[1] = x1, x[2] = x2, x[3] = x3;
    return !corrupt;
}

}  // namespace

std::vector<uint8_t> encode_stream(const CdfTables& tables, const int32_t* symbols,
                                   const int32_t* indexes, int64_t count) {
    const RowInfo* rows = tables.rows();
    WordSink out(static_cast<size_t>(count / 8 + 64));
    uint64_t x0 = kStateLow, x1 = kStateLow, x2 = kStateLow, x3 = kStateLow;
    static_assert(kLanes == 4, "the unrolled loops below assume four lanes");

    // Symbols go backwards; symbol i belongs to lane i % 4. First the ragged tail, then blocks.
    int64_t i = count - 1;
    for (; i >= 0 && (i & 3) != 3; --i) {
        out.reserve(1);
        uint64_t& x = (i & 3) == 0 ? x0 : (i & 3) == 1 ? x1 : x2;
        encode_symbol(x, symbols[i], rows[indexes[i]], out);
    }
    for (; i >= 3; i -= 4) {
        out.reserve(4);
        encode_symbol(x3, symbols[i], rows[indexes[i]], out);
        encode_symbol(x2, symbols[i - 1], rows[indexes[i - 1]], out);
        encode_symbol(x1, symbols[i - 2], rows[indexes[i - 2]], out);
        encode_symbol(x0, symbols[i - 3], rows[indexes[i - 3]], out);
    }

    std::vector<uint8_t> bytes(out.size() * 4 + kStreamTrailerBytes);
    for (size_t w = 0; w < out.size(); ++w) store_le32(bytes.data() + 4 * w, out.data()[w]);
    uint8_t* trailer = bytes.data() + 4 * out.size();
    const uint64_t states[kLanes] = {x0, x1, x2, x3};
    for (int k = 0; k < kLanes; ++k) store_le64(trailer + 8 * k, states[k]);
    return bytes;
}

namespace {

// Checks the framing of a stream and reads its final coder states; returns the word count.
size_t read_trailer(const uint8_t* data, size_t size, uint64_t* x) {
    if (size < kStreamTrailerBytes)
        throw CoderError("stream is " + std::to_string(size) + " bytes, shorter than the " +
                         std::to_string(kStreamTrailerBytes) +
                         "-byte coder state: truncated or not a fastcodec range-coder stream");
    if ((size - kStreamTrailerBytes) % 4 != 0)
        throw CoderError("stream length " + std::to_string(size) +
                         " is not a whole number of 32-bit words plus the coder state: truncated "
                         "or corrupt");
    const size_t num_words = (size - kStreamTrailerBytes) / 4;
    const uint8_t* trailer = data + 4 * num_words;
    for (int k = 0; k < kLanes; ++k) {
        x[k] = load_le64(trailer + 8 * k);
        if (x[k] < kStateLow || x[k] >= (uint64_t{1} << 63))
            throw CoderError("corrupt stream: coder state " + std::to_string(k) +
                             " is out of range");
    }
    return num_words;
}

}  // namespace

void decode_stream(const CdfTables& tables, const uint8_t* data, size_t size,
                   const int32_t* indexes, int64_t count, int32_t* out) {
    uint64_t x[kLanes];
    const size_t num_words = read_trailer(data, size, x);
    WordSource in(data, num_words);
    const bool valid = tables.top_overflow()
                           ? decode_lanes<true>(tables, x, in, indexes, count, out)
                           : decode_lanes<false>(tables, x, in, indexes, count, out);
    if (!valid)
        throw CoderError("corrupt stream: a decoded value is outside the int32 range");
    if (!in.clean_end() || x[0] != kStateLow || x[1] != kStateLow || x[2] != kStateLow ||
        x[3] != kStateLow)
        throw CoderError("corrupt or truncated stream: the decoder did not end where the encoder "
                         "began (wrong bytes, or tables/indexes other than the encoder's)");
}

PieceDecoder::PieceDecoder(const uint8_t* data, size_t size) : data_(data, data + size) {
    words_left_ = read_trailer(data_.data(), data_.size(), x_);
}

void PieceDecoder::decode(const CdfTables& tables, const int32_t* indexes, int64_t count,
                          int32_t* out) {
    if (failed_)
        throw CoderError("the stream failed to decode earlier (after symbol " +
                         std::to_string(pos_) + "); set a new stream");
    const DecodeParams dp(tables);
    const RowInfo* rows = tables.rows();
    WordSource in(data_.data(), words_left_);
    bool corrupt = false;
    const bool check_top = tables.top_overflow();
    for (int64_t i = 0; i < count; ++i) {
        if ((i & 4095) == 0 && in.exhausted()) break;  // invalid whatever follows: stop early
        uint64_t& x = x_[(pos_ + i) % kLanes];
        out[i] = check_top ? decode_symbol<true>(x, rows[indexes[i]], dp, in, corrupt)
                           : decode_symbol<false>(x, rows[indexes[i]], dp, in, corrupt);
    }
    words_left_ = in.left();
    failed_ = in.exhausted() || corrupt;
    if (in.exhausted())
        throw CoderError("corrupt or truncated stream: it ran out of data after symbol " +
                         std::to_string(pos_) + " (wrong bytes, or tables/indexes other than "
                         "the encoder's)");
    if (corrupt) throw CoderError("corrupt stream: a decoded value is outside the int32 range");
    pos_ += count;
}

bool PieceDecoder::at_clean_end() const {
    for (int k = 0; k < kLanes; ++k)
        if (x_[k] != kStateLow) return false;
    return words_left_ == 0;
}

}  // namespace fastcodec
