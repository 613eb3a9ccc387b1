// pybind11 bindings of the CUDA side: fastcodec._cuda. Compiled only when CMake finds nvcc.
//
// The kernels take RAW device pointers (Python ints, e.g. tensor.data_ptr()) and element strides,
// so this module does not link against torch; fastcodec.kernels.cuda_ops wraps it for tensors.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "conv_relu.h"
#include "runtime.h"

namespace py = pybind11;

namespace {

namespace fc = fastcodec::cuda;
using Strides = std::array<std::int64_t, 4>;

fc::DType parse_dtype(std::string name) {
    if (name.rfind("torch.", 0) == 0) name = name.substr(6);
    if (name == "float32" || name == "float") return fc::DType::kFloat32;
    if (name == "float16" || name == "half") return fc::DType::kFloat16;
    if (name == "bfloat16") return fc::DType::kBFloat16;
    throw py::value_error("dtype must be 'float32', 'float16' or 'bfloat16', got '" + name + "'");
}

fc::PoolKind parse_pool(const std::string& name) {
    if (name == "max") return fc::PoolKind::kMax;
    if (name == "avg") return fc::PoolKind::kAvg;
    throw py::value_error("pool must be 'max' or 'avg', got '" + name + "'");
}

template <typename Args>
void check(const char* op, const Args& args) {
    if (const char* msg = fc::check_args(args)) {
        throw py::value_error(std::string("fastcodec._cuda.") + op + ": " + msg);
    }
}

[[noreturn]] void raise_cuda_error(const char* op, const char* what, cudaError_t err) {
    throw std::runtime_error(std::string("fastcodec._cuda.") + op + ": " + what + " failed: " +
                             cudaGetErrorName(err) + " (" + std::to_string(static_cast<int>(err)) +
                             "): " + cudaGetErrorString(err));
}

// Makes a device current for its scope and puts the previous one back when it ends. The current
// device is per host thread and not this module's alone: it is the driver's current context, which
// torch's CUDA runtime reads too, so leaving `device` current would move the caller's later
// allocations and launches onto it.
class DeviceGuard {
public:
    DeviceGuard() = default;
    DeviceGuard(const DeviceGuard&) = delete;
    DeviceGuard& operator=(const DeviceGuard&) = delete;
    ~DeviceGuard() {
        if (restore_) cudaSetDevice(previous_);  // best effort: a destructor has no one to tell
    }
    // Makes `device` current; returns the name of the call that failed (err set), or nullptr.
    const char* set(int device, cudaError_t& err) {
        err = cudaGetDevice(&previous_);
        if (err != cudaSuccess) return "cudaGetDevice";
        if (previous_ == device) return nullptr;
        err = cudaSetDevice(device);
        if (err != cudaSuccess) return "cudaSetDevice";
        restore_ = true;
        return nullptr;
    }

private:
    int previous_ = 0;
    bool restore_ = false;
};

// Makes `device` current for the launch (the caller's current device is restored afterwards),
// then launches; raises RuntimeError on failure. The GIL is released meanwhile.
template <typename Args, typename Launch>
void launch(const char* op, const Args& args, std::uintptr_t stream, int device, Launch fn) {
    const char* what = "kernel launch";
    cudaError_t err = cudaSuccess;
    {
        py::gil_scoped_release release;
        DeviceGuard guard;
        if (device >= 0) {
            if (const char* failed = guard.set(device, err)) what = failed;
        }
        if (err == cudaSuccess) err = fn(args, reinterpret_cast<cudaStream_t>(stream));
    }
    if (err != cudaSuccess) {
        cudaGetLastError();  // leave no error behind for the next call (sticky ones stay anyway)
        raise_cuda_error(op, what, err);
    }
}

template <typename Args>
void fill_common(Args& a, std::uintptr_t x, std::uintptr_t w, std::uintptr_t b, std::uintptr_t out,
                 const std::string& dtype, std::int64_t n, std::int64_t cin, std::int64_t h,
                 std::int64_t width, std::int64_t cout, int kh, int kw, const Strides& xs,
                 const Strides& os, int pad_top, int pad_left, std::int64_t out_h,
                 std::int64_t out_w) {
    a.x = x;
    a.w = w;
    a.b = b;
    a.out = out;
    a.dtype = parse_dtype(dtype);
    a.n = n;
    a.cin = cin;
    a.h = h;
    a.w_in = width;
    a.cout = cout;
    a.kh = kh;
    a.kw = kw;
    for (int i = 0; i < 4; ++i) {
        a.x_strides[i] = xs[i];
        a.out_strides[i] = os[i];
    }
    a.pad_top = pad_top;
    a.pad_left = pad_left;
    a.out_h = out_h;
    a.out_w = out_w;
}

fc::ConvReluPoolArgs pool_args(std::uintptr_t x, std::uintptr_t w, std::uintptr_t b,
                               std::uintptr_t out, const std::string& dtype, std::int64_t n,
                               std::int64_t cin, std::int64_t h, std::int64_t width,
                               std::int64_t cout, int kh, int kw, const Strides& xs,
                               const Strides& os, int stride, int pad_top, int pad_left,
                               std::int64_t out_h, std::int64_t out_w, const std::string& pool,
                               int pool_size) {
    fc::ConvReluPoolArgs a;
    fill_common(a, x, w, b, out, dtype, n, cin, h, width, cout, kh, kw, xs, os, pad_top, pad_left,
                out_h, out_w);
    a.stride = stride;
    a.pool = parse_pool(pool);
    a.pool_size = pool_size;
    check("conv_relu_pool", a);
    return a;
}

fc::ConvReluUpsampleArgs upsample_args(std::uintptr_t x, std::uintptr_t w, std::uintptr_t b,
                                       std::uintptr_t out, const std::string& dtype,
                                       std::int64_t n, std::int64_t cin, std::int64_t h,
                                       std::int64_t width, std::int64_t cout, int kh, int kw,
                                       const Strides& xs, const Strides& os, int pad_top,
                                       int pad_left, std::int64_t out_h, std::int64_t out_w,
                                       int scale) {
    fc::ConvReluUpsampleArgs a;
    fill_common(a, x, w, b, out, dtype, n, cin, h, width, cout, kh, kw, xs, os, pad_top, pad_left,
                out_h, out_w);
    a.scale = scale;
    check("conv_relu_upsample", a);
    return a;
}

const char* const kPoolDoc = R"doc(Fused conv2d + bias + ReLU + pooling on raw device pointers.

out = {max,avg}_pool2d(relu(conv2d(x, w, b, stride)), pool_size) (floor mode) with asymmetric
zero padding: conv(oh, ow) reads x[oh*stride - pad_top + ky, ow*stride - pad_left + kx]; the conv
output size (out_h, out_w) is given, out is [n, cout, out_h // pool_size, out_w // pool_size].
n, cin, h, w are the input sizes, cout the conv output channels, kh, kw the kernel size (1..7).
x_ptr/out_ptr are addressed with the element strides x_strides/out_strides (4 ints each, NCHW
order); w_ptr is a contiguous [cout, cin, kh, kw] weight, b_ptr a [cout] bias or 0 for none.
dtype: 'float32', 'float16' or 'bfloat16' (fp32 accumulation). The kernel is enqueued on `stream`
(a cudaStream_t as an int, 0 = default stream) of `device` (-1: the current one), asynchronously;
the calling thread's current device is left as it was.
Raises ValueError for invalid arguments and RuntimeError when CUDA reports an error (e.g. no
driver).)doc";

const char* const kUpsampleDoc = R"doc(Fused conv2d (stride 1) + bias + ReLU + pixel shuffle on raw device pointers.

out = pixel_shuffle(relu(conv2d(x, w, b)), scale): w is [cout = C*scale*scale, cin, kh, kw], the
conv output size (out_h, out_w) is given (asymmetric zero padding pad_top/pad_left), out is
[n, C, out_h*scale, out_w*scale] with element strides out_strides. Other arguments and errors as in
conv_relu_pool.)doc";

}  // namespace

PYBIND11_MODULE(_cuda, m) {
    m.doc() = "CUDA side of fastcodec: runtime queries and the fused conv kernels (raw pointers).";
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

    m.def(
        "conv_relu_pool",
        [](std::uintptr_t x, std::uintptr_t w, std::uintptr_t b, std::uintptr_t out,
           const std::string& dtype, std::int64_t n, std::int64_t cin, std::int64_t h,
           std::int64_t width, std::int64_t cout, int kh, int kw, const Strides& xs,
           const Strides& os, int stride, int pad_top, int pad_left, std::int64_t out_h,
           std::int64_t out_w, const std::string& pool, int pool_size, std::uintptr_t stream,
           int device) {
            const auto a = pool_args(x, w, b, out, dtype, n, cin, h, width, cout, kh, kw, xs, os,
                                     stride, pad_top, pad_left, out_h, out_w, pool, pool_size);
            launch("conv_relu_pool", a, stream, device, fc::launch_conv_relu_pool);
        },
        py::arg("x_ptr"), py::arg("w_ptr"), py::arg("b_ptr"), py::arg("out_ptr"), py::arg("dtype"),
        py::arg("n"), py::arg("cin"), py::arg("h"), py::arg("w"), py::arg("cout"), py::arg("kh"),
        py::arg("kw"), py::arg("x_strides"), py::arg("out_strides"), py::arg("stride"),
        py::arg("pad_top"), py::arg("pad_left"), py::arg("out_h"), py::arg("out_w"),
        py::arg("pool"), py::arg("pool_size"), py::arg("stream") = 0, py::arg("device") = -1,
        kPoolDoc);

    m.def(
        "conv_relu_upsample",
        [](std::uintptr_t x, std::uintptr_t w, std::uintptr_t b, std::uintptr_t out,
           const std::string& dtype, std::int64_t n, std::int64_t cin, std::int64_t h,
           std::int64_t width, std::int64_t cout, int kh, int kw, const Strides& xs,
           const Strides& os, int pad_top, int pad_left, std::int64_t out_h, std::int64_t out_w,
           int scale, std::uintptr_t stream, int device) {
            const auto a = upsample_args(x, w, b, out, dtype, n, cin, h, width, cout, kh, kw, xs,
                                         os, pad_top, pad_left, out_h, out_w, scale);
            launch("conv_relu_upsample", a, stream, device, fc::launch_conv_relu_upsample);
        },
        py::arg("x_ptr"), py::arg("w_ptr"), py::arg("b_ptr"), py::arg("out_ptr"), py::arg("dtype"),
        py::arg("n"), py::arg("cin"), py::arg("h"), py::arg("w"), py::arg("cout"), py::arg("kh"),
        py::arg("kw"), py::arg("x_strides"), py::arg("out_strides"), py::arg("pad_top"),
        py::arg("pad_left"), py::arg("out_h"), py::arg("out_w"), py::arg("scale"),
        py::arg("stream") = 0, py::arg("device") = -1, kUpsampleDoc);

    // The kernels' per-element code run on the CPU over HOST pointers (single-threaded, slow):
    // a test hook that checks the indexing and numerics where no GPU is available.
    m.def(
        "_emulate_conv_relu_pool",
        [](std::uintptr_t x, std::uintptr_t w, std::uintptr_t b, std::uintptr_t out,
           const std::string& dtype, std::int64_t n, std::int64_t cin, std::int64_t h,
           std::int64_t width, std::int64_t cout, int kh, int kw, const Strides& xs,
           const Strides& os, int stride, int pad_top, int pad_left, std::int64_t out_h,
           std::int64_t out_w, const std::string& pool, int pool_size) {
            const auto a = pool_args(x, w, b, out, dtype, n, cin, h, width, cout, kh, kw, xs, os,
                                     stride, pad_top, pad_left, out_h, out_w, pool, pool_size);
            py::gil_scoped_release release;
            fc::emulate_conv_relu_pool_on_host(a);
        },
        py::arg("x_ptr"), py::arg("w_ptr"), py::arg("b_ptr"), py::arg("out_ptr"), py::arg("dtype"),
        py::arg("n"), py::arg("cin"), py::arg("h"), py::arg("w"), py::arg("cout"), py::arg("kh"),
        py::arg("kw"), py::arg("x_strides"), py::arg("out_strides"), py::arg("stride"),
        py::arg("pad_top"), py::arg("pad_left"), py::arg("out_h"), py::arg("out_w"),
        py::arg("pool"), py::arg("pool_size"),
        "conv_relu_pool's kernel code run on the CPU over host pointers (testing only).");

    m.def(
        "_emulate_conv_relu_upsample",
        [](std::uintptr_t x, std::uintptr_t w, std::uintptr_t b, std::uintptr_t out,
           const std::string& dtype, std::int64_t n, std::int64_t cin, std::int64_t h,
           std::int64_t width, std::int64_t cout, int kh, int kw, const Strides& xs,
           const Strides& os, int pad_top, int pad_left, std::int64_t out_h, std::int64_t out_w,
           int scale) {
            const auto a = upsample_args(x, w, b, out, dtype, n, cin, h, width, cout, kh, kw, xs,
                                         os, pad_top, pad_left, out_h, out_w, scale);
            py::gil_scoped_release release;
            fc::emulate_conv_relu_upsample_on_host(a);
        },
        py::arg("x_ptr"), py::arg("w_ptr"), py::arg("b_ptr"), py::arg("out_ptr"), py::arg("dtype"),
        py::arg("n"), py::arg("cin"), py::arg("h"), py::arg("w"), py::arg("cout"), py::arg("kh"),
        py::arg("kw"), py::arg("x_strides"), py::arg("out_strides"), py::arg("pad_top"),
        py::arg("pad_left"), py::arg("out_h"), py::arg("out_w"), py::arg("scale"),
        "conv_relu_upsample's kernel code run on the CPU over host pointers (testing only).");
}
