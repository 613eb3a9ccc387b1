#include <cuda_runtime.h>

#include "build_config.h"
#include "runtime.h"

namespace fastcodec::cuda {

namespace {
// The architectures the device code was built for (from CMake, see build_config.h.in).
constexpr int kArchs[] = {FASTCODEC_CUDA_ARCH_LIST, 0};

}  // namespace

RuntimeInfo query_runtime() {
    RuntimeInfo info{};
    cudaRuntimeGetVersion(&info.runtime_version);
    if (cudaDriverGetVersion(&info.driver_version) != cudaSuccess) info.driver_version = 0;
    const cudaError_t err = cudaGetDeviceCount(&info.device_count);
    if (err != cudaSuccess) {
        info.device_count = 0;
        cudaGetLastError();  // clear the error so later runtime calls start clean
    }
    info.status = static_cast<int>(err);
    info.message = cudaGetErrorString(err);
    return info;
}

const int* compiled_architectures() {
    return kArchs;
}

}  // namespace fastcodec::cuda
