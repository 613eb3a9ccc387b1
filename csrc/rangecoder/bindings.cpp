// pybind11 bindings: fastcodec._rangecoder.Tables. The public, documented API (argument
// conversion and checks of dtype and shape) is fastcodec/rangecoder.py; this layer expects
// C-contiguous int32 arrays and releases the GIL around all coding.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <thread>

#include "rans.h"

namespace py = pybind11;
using fastcodec::CdfTables;
using fastcodec::CoderError;

namespace {

using IntArray = py::array_t<int32_t, py::array::c_style>;

int resolve_threads(int threads) {
    if (threads > 0) return threads;
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : static_cast<int>(hw);
}

void require_ndim(const IntArray& a, const char* name, int ndim) {
    if (a.ndim() != ndim)
        throw CoderError(std::string(name) + " must be " + std::to_string(ndim) + "-D, got " +
                         std::to_string(a.ndim()) + "-D");
}

// Rethrows a per-stream error with the stream's position in the batch.
template <class F>
void tag_stream_errors(int64_t stream, F&& f) {
    try {
        f();
    } catch (const CoderError& e) {
        throw CoderError("stream " + std::to_string(stream) + ": " + e.what());
    }
}

class PyTables {
  public:
    PyTables(const IntArray& cdfs, const IntArray& lengths, const IntArray& offsets,
             int precision)
        : tables_(make(cdfs, lengths, offsets, precision)) {}

    const CdfTables& tables() const { return tables_; }
    int64_t num_rows() const { return tables_.num_rows(); }
    int precision() const { return tables_.precision(); }

    py::bytes encode(const IntArray& symbols, const IntArray& indexes) const {
        require_ndim(symbols, "symbols", 1);
        require_ndim(indexes, "indexes", 1);
        if (symbols.shape(0) != indexes.shape(0))
            throw CoderError("symbols has " + std::to_string(symbols.shape(0)) +
                             " entries but indexes has " + std::to_string(indexes.shape(0)));
        std::vector<uint8_t> out;
        {
            py::gil_scoped_release release;
            tables_.check_indexes(indexes.data(), indexes.shape(0));
            out = fastcodec::encode_stream(tables_, symbols.data(), indexes.data(),
                                           symbols.shape(0));
        }
        return py::bytes(reinterpret_cast<const char*>(out.data()), out.size());
    }

    IntArray decode(const py::bytes& data, const IntArray& indexes) const {
        require_ndim(indexes, "indexes", 1);
        const std::string_view view = data;
        IntArray out(indexes.shape(0));
        {
            py::gil_scoped_release release;
            tables_.check_indexes(indexes.data(), indexes.shape(0));
            fastcodec::decode_stream(tables_, reinterpret_cast<const uint8_t*>(view.data()),
                                     view.size(), indexes.data(), indexes.shape(0),
                                     out.mutable_data());
        }
        return out;
    }

    // symbols [B, K]; indexes [K] (shared) or [B, K].
    py::list encode_batch(const IntArray& symbols, const IntArray& indexes, int threads) const {
        require_ndim(symbols, "symbols", 2);
        const int64_t batch = symbols.shape(0), count = symbols.shape(1);
        const bool shared = check_batch_indexes(indexes, batch, count);
        std::vector<std::vector<uint8_t>> streams(static_cast<size_t>(batch));
        {
            py::gil_scoped_release release;
            tables_.check_indexes(indexes.data(), indexes.size());
            fastcodec::parallel_for(batch, resolve_threads(threads), [&](int64_t b) {
                const int32_t* idx = indexes.data() + (shared ? 0 : b * count);
                streams[b] = fastcodec::encode_stream(tables_, symbols.data() + b * count, idx,
                                                      count);
            });
        }
        py::list result;
        for (const auto& s : streams)
            result.append(py::bytes(reinterpret_cast<const char*>(s.data()), s.size()));
        return result;
    }

    IntArray decode_batch(const py::list& streams, const IntArray& indexes, int threads) const {
        const int64_t batch = static_cast<int64_t>(streams.size());
        const int64_t count = indexes.ndim() == 2 ? indexes.shape(1)
                                                  : (indexes.ndim() == 1 ? indexes.shape(0) : 0);
        const bool shared = check_batch_indexes(indexes, batch, count);
        std::vector<std::string_view> views;
        views.reserve(static_cast<size_t>(batch));
        for (int64_t b = 0; b < batch; ++b) {
            py::handle item = streams[static_cast<size_t>(b)];
            if (!PyBytes_Check(item.ptr()))
                throw CoderError("streams[" + std::to_string(b) + "] must be bytes, got " +
                                 std::string(py::str(py::type::of(item).attr("__name__"))));
            views.emplace_back(py::reinterpret_borrow<py::bytes>(item));
        }
        IntArray out({batch, count});
        int32_t* dst = out.mutable_data();
        {
            py::gil_scoped_release release;
            tables_.check_indexes(indexes.data(), indexes.size());
            fastcodec::parallel_for(batch, resolve_threads(threads), [&](int64_t b) {
                tag_stream_errors(b, [&] {
                    const int32_t* idx = indexes.data() + (shared ? 0 : b * count);
                    const auto& v = views[static_cast<size_t>(b)];
                    fastcodec::decode_stream(tables_, reinterpret_cast<const uint8_t*>(v.data()),
                                             v.size(), idx, count, dst + b * count);
                });
            });
        }
        return out;
    }

  private:
    static CdfTables make(const IntArray& cdfs, const IntArray& lengths, const IntArray& offsets,
                          int precision) {
        require_ndim(cdfs, "cdfs", 2);
        require_ndim(lengths, "cdf_lengths", 1);
        require_ndim(offsets, "offsets", 1);
        return CdfTables(cdfs.data(), cdfs.shape(0), cdfs.shape(1), lengths.data(),
                         lengths.shape(0), offsets.data(), offsets.shape(0), precision);
    }

    // True when one row of indexes serves every stream.
    static bool check_batch_indexes(const IntArray& indexes, int64_t batch, int64_t count) {
        if (indexes.ndim() == 1 && indexes.shape(0) == count) return true;
        if (indexes.ndim() == 2 && indexes.shape(0) == batch && indexes.shape(1) == count)
            return false;
        std::string shape;
        for (py::ssize_t d = 0; d < indexes.ndim(); ++d)
            shape += (d ? ", " : "") + std::to_string(indexes.shape(d));
        throw CoderError("indexes must have shape [" + std::to_string(count) + "] or [" +
                         std::to_string(batch) + ", " + std::to_string(count) + "], got [" +
                         shape + "]");
    }

    CdfTables tables_;
};

// One stream decoded piece by piece (fastcodec::PieceDecoder). Pieces are small in the models
// that need this (one position of an autoregressive context model at a time), so the GIL stays
// held: releasing it would cost more than the decoding, and it keeps the one decoder safe
// against concurrent calls.
class PyPieceDecoder {
  public:
    explicit PyPieceDecoder(const py::bytes& data)
        : decoder_(make(data)) {}

    IntArray decode(const PyTables& tables, const IntArray& indexes) {
        require_ndim(indexes, "indexes", 1);
        tables.tables().check_indexes(indexes.data(), indexes.shape(0));
        IntArray out(indexes.shape(0));
        decoder_.decode(tables.tables(), indexes.data(), indexes.shape(0), out.mutable_data());
        return out;
    }

    bool at_clean_end() const { return decoder_.at_clean_end(); }
    int64_t decoded() const { return decoder_.decoded(); }

  private:
    static fastcodec::PieceDecoder make(const py::bytes& data) {
        const std::string_view view = data;
        return fastcodec::PieceDecoder(reinterpret_cast<const uint8_t*>(view.data()), view.size());
    }

    fastcodec::PieceDecoder decoder_;
};

}  // namespace

PYBIND11_MODULE(_rangecoder, m) {
    m.doc() = "Native interleaved rANS range coder (see fastcodec.rangecoder for the API).";
    m.attr("LANES") = fastcodec::kLanes;
    m.attr("STREAM_OVERHEAD_BYTES") = fastcodec::kStreamTrailerBytes;
    py::class_<PyTables>(m, "Tables")
        .def(py::init<const IntArray&, const IntArray&, const IntArray&, int>(), py::arg("cdfs"),
             py::arg("cdf_lengths"), py::arg("offsets"), py::arg("precision"))
        .def_property_readonly("num_rows", &PyTables::num_rows)
        .def_property_readonly("precision", &PyTables::precision)
        .def("encode", &PyTables::encode, py::arg("symbols"), py::arg("indexes"))
        .def("decode", &PyTables::decode, py::arg("data"), py::arg("indexes"))
        .def("encode_batch", &PyTables::encode_batch, py::arg("symbols"), py::arg("indexes"),
             py::arg("threads"))
        .def("decode_batch", &PyTables::decode_batch, py::arg("streams"), py::arg("indexes"),
             py::arg("threads"));
    py::class_<PyPieceDecoder>(m, "PieceDecoder")
        .def(py::init<const py::bytes&>(), py::arg("data"))
        .def("decode", &PyPieceDecoder::decode, py::arg("tables"), py::arg("indexes"))
        .def_property_readonly("at_clean_end", &PyPieceDecoder::at_clean_end)
        .def_property_readonly("decoded", &PyPieceDecoder::decoded);
}
