// pybind11 bindings of the CUDA side: fastcodec._cuda. Compiled only when CMake finds nvcc.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <vector>

#include "runtime.h"

namespace py = pybind11;

PYBIND11_MODULE(_cuda, m) {
    m.doc() = "CUDA runtime queries for fastcodec (kernels are added by the fused-ops work).";
    m.def("runtime_info", [] {
        const auto info = fastcodec::cuda::query_runtime();
        py::dict d;
        d["runtime_version"] = info.runtime_version;
        d["driver_version"] = info.driver_version;
        d["device_count"] = info.device_count;
        d["status"] = info.status;
        d["message"] = std::string(info.message ? info.message : "");
        return d;
    }, "CUDA runtime/driver versions and device count; device_count is 0 without a driver.");
    m.def("compiled_architectures", [] {
        std::vector<int> archs;
        for (const int* a = fastcodec::cuda::compiled_architectures(); *a; ++a) archs.push_back(*a);
        return archs;
    }, "SM architectures the CUDA code was compiled for, e.g. [80, 90].");
}
