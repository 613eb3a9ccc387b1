// Interleaved rANS range coder over integer CDF tables.
//
// Stream layout (all little-endian):
//   [uint32 word 0][uint32 word 1] ... [uint32 word n-1][uint64 state 0] ... [uint64 state kLanes-1]
// The encoder walks the symbols backwards and appends renormalisation words; the decoder reads the
// final states from the end and pops the words from the back, walking the symbols forwards.
// Symbol i is coded by lane i % kLanes, so kLanes independent states hide the latency of one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace fastcodec {

constexpr int kLanes = 4;                      // interleaved coder states per stream
constexpr uint64_t kStateLow = 1ull << 31;     // L: states live in [L, 2^63)
constexpr int kWordBits = 32;                  // renormalisation unit
constexpr int kMaxPrecision = 16;
constexpr int kLutBits = 10;                   // decoder bucket table: 2^10 buckets per CDF row
constexpr int kBypassChunkBits = 16;           // raw bits are coded in chunks of at most this
constexpr int kMaxEscapeBits = 34;             // |symbol - offset| < 2^33, folded < 2^34
constexpr size_t kStreamTrailerBytes = kLanes * sizeof(uint64_t);

// Thrown for malformed or corrupt input; the bindings turn it into ValueError.
struct CoderError : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};

// Per-bin encoder constants: division by `freq` as a multiply-high by `rcp` and a shift.
struct EncodeBin {
    uint64_t rcp;     // ceil(2^(63+shift)/freq) for freq >= 2, 2^64-1 for freq == 1
    uint64_t x_max;   // freq * 2^(63-p): a state at or above it is renormalised first
    uint32_t bias;    // start of the bin (+ 2^p - 1 when freq == 1)
    uint32_t cmpl;    // 2^p - freq
    uint32_t shift;   // shift applied after the multiply-high
    uint32_t pad;
};

// Per-row view used in the hot loops.
struct RowInfo {
    const EncodeBin* enc;   // [length - 1] bins
    const uint32_t* cdf;    // [length] cumulative frequencies, cdf[0] = 0, cdf[length-1] = 2^p
    const uint16_t* lut;    // [2^lut_bits] first candidate bin for each bucket of slots
    int32_t offset;         // symbol = bin + offset for regular bins
    int32_t escape_bin;     // length - 2: the last bin; regular values are [0, escape_bin)
};

// Validated CDF tables and everything the coder precomputes from them. Immutable after
// construction, so one instance may be shared by any number of threads.
class CdfTables {
  public:
    // cdfs: [num_rows, row_stride] int32, row r holds lengths[r] valid entries.
    CdfTables(const int32_t* cdfs, int64_t num_rows, int64_t row_stride, const int32_t* lengths,
              int64_t num_lengths, const int32_t* offsets, int64_t num_offsets, int precision);

    int precision() const { return precision_; }
    int64_t num_rows() const { return static_cast<int64_t>(rows_.size()); }
    const RowInfo& row(int32_t r) const { return rows_[static_cast<size_t>(r)]; }
    const RowInfo* rows() const { return rows_.data(); }
    int lut_shift() const { return lut_shift_; }
    // True when some row's regular bins map to symbols above INT32_MAX (see decode_stream).
    bool top_overflow() const { return top_overflow_; }

    // Throws CoderError naming the first index outside [0, num_rows).
    void check_indexes(const int32_t* indexes, int64_t count) const;

  private:
    int precision_;
    int lut_shift_;
    bool top_overflow_ = false;
    std::vector<EncodeBin> enc_;
    std::vector<uint32_t> cdf_;
    std::vector<uint16_t> lut_;
    std::vector<RowInfo> rows_;
};

// The fixed table that codes the bit length (0..kMaxEscapeBits) of an escaped value: a geometric
// prior built with integer arithmetic only, so it is the same on every machine.
const CdfTables& escape_length_table();

// Encodes symbols[i] with row indexes[i]; indexes must have been checked.
std::vector<uint8_t> encode_stream(const CdfTables& tables, const int32_t* symbols,
                                   const int32_t* indexes, int64_t count);

// Decodes count symbols into out; throws CoderError on corrupt or truncated data.
void decode_stream(const CdfTables& tables, const uint8_t* data, size_t size,
                   const int32_t* indexes, int64_t count, int32_t* out);

// Decodes one stream in pieces, each piece with its own tables and indexes, in the order the
// symbols were encoded: what an autoregressive model needs, whose next tables depend on the
// symbols decoded so far. The stream is an ordinary one (symbol i of the whole stream belongs to
// lane i % kLanes), made by encode_stream over all pieces at once. Not thread-safe.
class PieceDecoder {
  public:
    // Copies the bytes; throws CoderError if they cannot be a stream.
    PieceDecoder(const uint8_t* data, size_t size);
    // Decodes the next count symbols; indexes must have been checked against tables. Throws
    // CoderError once the stream has run out of words or a value is impossible, and from then
    // on for every call (the states are lost).
    void decode(const CdfTables& tables, const int32_t* indexes, int64_t count, int32_t* out);
    // True when every word was consumed and every state is back where the encoder began.
    bool at_clean_end() const;
    int64_t decoded() const { return pos_; }

  private:
    std::vector<uint8_t> data_;
    uint64_t x_[kLanes];
    size_t words_left_;
    int64_t pos_ = 0;
    bool failed_ = false;
};

// Runs job(i) for i in [0, jobs) on up to `threads` threads; rethrows the first error.
void parallel_for(int64_t jobs, int threads, const std::function<void(int64_t)>& job);

}  // namespace fastcodec
