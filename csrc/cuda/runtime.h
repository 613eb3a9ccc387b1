// Host-side queries of the CUDA runtime, compiled by nvcc into fastcodec._cuda.
// They never abort: without a driver or a GPU they report it through their return values.
#pragma once

namespace fastcodec::cuda {

struct RuntimeInfo {
    int runtime_version;  // e.g. 13000 for CUDA 13.0
    int driver_version;   // 0 when no driver is installed
    int device_count;     // 0 when no usable device
    int status;           // cudaError_t of the device query (0 = success)
    const char* message;  // cudaGetErrorString(status)
};

RuntimeInfo query_runtime();

// Architectures (e.g. 80, 90) this library was compiled for, terminated by 0.
const int* compiled_architectures();

}  // namespace fastcodec::cuda
