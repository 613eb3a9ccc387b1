// Validation of CDF tables and the constants the coder precomputes from them.
#include "rans.h"

#include <algorithm>

namespace fastcodec {
namespace {

std::string row_prefix(int64_t r) { return "cdfs row " + std::to_string(r) + ": "; }

// Smallest l with 2^l >= f, for f >= 1.
uint32_t ceil_log2(uint32_t f) {
    uint32_t l = 0;
    while ((uint64_t{1} << l) < f) ++l;
    return l;
}

EncodeBin make_encode_bin(uint32_t start, uint32_t freq, int precision) {
    EncodeBin bin{};
    bin.x_max = static_cast<uint64_t>(freq) << (63 - precision);
    bin.cmpl = (uint32_t{1} << precision) - freq;
    if (freq == 1) {
        // mulhi(x, 2^64-1) = x-1, and the bias adds back the missing (2^p - 1).
        bin.rcp = ~uint64_t{0};
        bin.shift = 0;
        bin.bias = start + (uint32_t{1} << precision) - 1;
    } else {
        // Division by an invariant integer: for x < 2^63, floor(x/f) = mulhi(x, m) >> (l-1)
        // with l = ceil(log2 f) and m = ceil(2^(63+l) / f) < 2^64.
        const uint32_t l = ceil_log2(freq);
        const unsigned __int128 num = static_cast<unsigned __int128>(1) << (63 + l);
        bin.rcp = static_cast<uint64_t>((num + freq - 1) / freq);
        bin.shift = l - 1;
        bin.bias = start;
    }
    return bin;
}

}  // namespace

CdfTables::CdfTables(const int32_t* cdfs, int64_t num_rows, int64_t row_stride,
                     const int32_t* lengths, int64_t num_lengths, const int32_t* offsets,
                     int64_t num_offsets, int precision)
    : precision_(precision) {
    if (precision < 1 || precision > kMaxPrecision)
        throw CoderError("precision must be in [1, 16], got " + std::to_string(precision));
    if (num_lengths != num_rows)
        throw CoderError("cdf_lengths has " + std::to_string(num_lengths) +
                         " entries but cdfs has " + std::to_string(num_rows) + " rows");
    if (num_offsets != num_rows)
        throw CoderError("offsets has " + std::to_string(num_offsets) +
                         " entries but cdfs has " + std::to_string(num_rows) + " rows");

    const int64_t total = int64_t{1} << precision;
    const int lut_bits = std::min(kLutBits, precision);
    lut_shift_ = precision - lut_bits;
    const int64_t lut_size = int64_t{1} << lut_bits;

    int64_t total_entries = 0;
    for (int64_t r = 0; r < num_rows; ++r) {
        const int64_t len = lengths[r];
        if (len < 2 || len > row_stride)
            throw CoderError("cdf_lengths[" + std::to_string(r) + "] = " + std::to_string(len) +
                             " is outside [2, " + std::to_string(row_stride) +
                             "] (2 to the number of columns of cdfs)");
        const int32_t* row = cdfs + r * row_stride;
        if (row[0] != 0)
            throw CoderError(row_prefix(r) + "cdf[0] = " + std::to_string(row[0]) +
                             ", must be 0");
        for (int64_t j = 1; j < len; ++j) {
            if (row[j] <= row[j - 1])
                throw CoderError(row_prefix(r) + "cdf[" + std::to_string(j) + "] = " +
                                 std::to_string(row[j]) + " is not greater than cdf[" +
                                 std::to_string(j - 1) + "] = " + std::to_string(row[j - 1]) +
                                 " (every bin needs a probability > 0)");
        }
        if (row[len - 1] != total)
            throw CoderError(row_prefix(r) + "last entry cdf[" + std::to_string(len - 1) +
                             "] = " + std::to_string(row[len - 1]) +
                             ", must be 2**precision = " + std::to_string(total));
        total_entries += len;
    }

    cdf_.resize(static_cast<size_t>(total_entries));
    enc_.resize(static_cast<size_t>(total_entries - num_rows));
    lut_.resize(static_cast<size_t>(num_rows * lut_size));
    rows_.resize(static_cast<size_t>(num_rows));

    int64_t cdf_pos = 0, enc_pos = 0;
    for (int64_t r = 0; r < num_rows; ++r) {
        const int64_t len = lengths[r];
        const int32_t* row = cdfs + r * row_stride;
        uint32_t* cdf = cdf_.data() + cdf_pos;
        EncodeBin* enc = enc_.data() + enc_pos;
        uint16_t* lut = lut_.data() + r * lut_size;
        for (int64_t j = 0; j < len; ++j) cdf[j] = static_cast<uint32_t>(row[j]);
        for (int64_t b = 0; b + 1 < len; ++b)
            enc[b] = make_encode_bin(cdf[b], cdf[b + 1] - cdf[b], precision);
        // lut[k] = the bin holding slot k << lut_shift: the decoder starts its search there.
        int64_t bin = 0;
        for (int64_t k = 0; k < lut_size; ++k) {
            const uint32_t slot = static_cast<uint32_t>(k << lut_shift_);
            while (cdf[bin + 1] <= slot) ++bin;
            lut[k] = static_cast<uint16_t>(bin);
        }
        rows_[r] = RowInfo{enc, cdf, lut, offsets[r], static_cast<int32_t>(len - 2)};
        top_overflow_ |= static_cast<int64_t>(offsets[r]) + (len - 3) > INT32_MAX;
        cdf_pos += len;
        enc_pos += len - 1;
    }
}

const CdfTables& escape_length_table() {
    static const CdfTables table = [] {
        constexpr int n = kMaxEscapeBits + 1;
        constexpr int32_t total = 1 << 16;
        int32_t freq[n];
        int32_t sum = 0;
        freq[0] = total * 3 / 10;
        for (int k = 1; k < n; ++k) freq[k] = std::max<int32_t>(1, freq[k - 1] * 7 / 10);
        for (int k = 0; k < n; ++k) sum += freq[k];
        freq[0] += total - sum;
        int32_t cdf[n + 1] = {0};
        for (int k = 0; k < n; ++k) cdf[k + 1] = cdf[k] + freq[k];
        const int32_t length = n + 1, offset = 0;
        return CdfTables(cdf, 1, length, &length, 1, &offset, 1, 16);
    }();
    return table;
}

void CdfTables::check_indexes(const int32_t* indexes, int64_t count) const {
    const uint32_t n = static_cast<uint32_t>(rows_.size());
    // Branch-free scan first (vectorises); locate the culprit only on failure.
    uint32_t bad = 0;
    for (int64_t i = 0; i < count; ++i) bad |= static_cast<uint32_t>(indexes[i]) >= n;
    if (!bad) return;
    for (int64_t i = 0; i < count; ++i)
        if (static_cast<uint32_t>(indexes[i]) >= n)
            throw CoderError("indexes[" + std::to_string(i) + "] = " + std::to_string(indexes[i]) +
                             " is outside [0, " + std::to_string(n) + ") (the rows of cdfs)");
}

}  // namespace fastcodec
