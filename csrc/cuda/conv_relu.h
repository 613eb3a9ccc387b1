// Fused conv2d + bias + ReLU + {max, avg} pool, and conv2d + bias + ReLU + pixel shuffle.
//
// Plain C++ interface (no CUDA types beyond cudaError_t / cudaStream_t), so that the pybind11
// bindings, compiled by the host compiler, can call it with raw device pointers.
//
// Semantics (PyTorch names, floor-mode pooling, asymmetric zero padding):
//   conv_relu_pool:     out = pool(relu(conv2d(x, w, b, stride)), P)
//                       conv(n, co, oh, ow) = b[co] + sum_{ci, ky, kx} w[co, ci, ky, kx] *
//                           x[n, ci, oh*stride - pad_top + ky, ow*stride - pad_left + kx]
//                       (x is zero outside [0, H) x [0, W)); conv size (out_h, out_w) is given;
//                       out is [N, Cout, out_h / P, out_w / P].
//   conv_relu_upsample: out = pixel_shuffle(relu(conv2d(x, w, b, stride=1)), s)
//                       w is [C*s*s, Cin, kh, kw], out is [N, C, out_h*s, out_w*s].
// x and out are addressed through element strides (NCHW-contiguous, channels_last or any other
// layout); w is contiguous [Cout, Cin, kh, kw], b is [Cout] or absent (0). Accumulation is fp32
// for every element type; the result is rounded once to the element type.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace fastcodec::cuda {

enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };
enum class PoolKind : int { kMax = 0, kAvg = 1 };

constexpr int kMaxKernelSize = 7;

struct ConvReluPoolArgs {
    std::uintptr_t x = 0;    // input  [N, Cin, H, W], element strides x_strides
    std::uintptr_t w = 0;    // weight [Cout, Cin, kh, kw], contiguous
    std::uintptr_t b = 0;    // bias   [Cout], contiguous; 0 = no bias
    std::uintptr_t out = 0;  // output [N, Cout, out_h / P, out_w / P], element strides out_strides
    DType dtype = DType::kFloat32;  // of x, w, b and out
    std::int64_t n = 0, cin = 0, h = 0, w_in = 0, cout = 0;
    int kh = 0, kw = 0;             // 1..7
    std::int64_t x_strides[4] = {0, 0, 0, 0};
    std::int64_t out_strides[4] = {0, 0, 0, 0};
    int stride = 1;                 // 1 or 2
    int pad_top = 0, pad_left = 0;  // >= 0
    std::int64_t out_h = 0, out_w = 0;  // conv output size (before pooling)
    PoolKind pool = PoolKind::kMax;
    int pool_size = 2;              // P >= 1 (kernel = stride = P, no padding, floor mode)
};

struct ConvReluUpsampleArgs {
    std::uintptr_t x = 0;    // input  [N, Cin, H, W], element strides x_strides
    std::uintptr_t w = 0;    // weight [Cout = C*s*s, Cin, kh, kw], contiguous
    std::uintptr_t b = 0;    // bias   [Cout]; 0 = no bias
    std::uintptr_t out = 0;  // output [N, C, out_h*s, out_w*s], element strides out_strides
    DType dtype = DType::kFloat32;
    std::int64_t n = 0, cin = 0, h = 0, w_in = 0, cout = 0;  // cout = conv channels = C*s*s
    int kh = 0, kw = 0;             // 1..7
    std::int64_t x_strides[4] = {0, 0, 0, 0};
    std::int64_t out_strides[4] = {0, 0, 0, 0};
    int pad_top = 0, pad_left = 0;  // >= 0 (conv stride is 1)
    std::int64_t out_h = 0, out_w = 0;  // conv output size (before the shuffle)
    int scale = 2;                  // s >= 1, cout % (s*s) == 0
};

// nullptr when the arguments are acceptable, otherwise a static message saying what is wrong.
const char* check_args(const ConvReluPoolArgs& args);
const char* check_args(const ConvReluUpsampleArgs& args);

// Enqueue the kernel on `stream`. Returns cudaErrorInvalidValue for arguments check_args
// rejects, otherwise the launch status (cudaGetLastError after the launch, e.g.
// cudaErrorInsufficientDriver without a driver). Empty outputs launch nothing and succeed.
cudaError_t launch_conv_relu_pool(const ConvReluPoolArgs& args, cudaStream_t stream);
cudaError_t launch_conv_relu_upsample(const ConvReluUpsampleArgs& args, cudaStream_t stream);

// The same per-element code run on the host over HOST pointers (single-threaded; for testing
// the indexing and numerics on machines without a GPU). Returns cudaErrorInvalidValue for
// rejected arguments, otherwise cudaSuccess.
cudaError_t emulate_conv_relu_pool_on_host(const ConvReluPoolArgs& args);
cudaError_t emulate_conv_relu_upsample_on_host(const ConvReluUpsampleArgs& args);

}  // namespace fastcodec::cuda
