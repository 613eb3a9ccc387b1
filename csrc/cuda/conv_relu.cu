// Fused conv2d + bias + ReLU + pool / pixel-shuffle kernels (see conv_relu.h for the semantics).
//
// Design (correctness first, no shared memory): one thread per OUTPUT element, grid-stride
// loop, 64-bit index math (32-bit divisions when the values fit). The linear index is decomposed
// with the output's unit-stride dimension innermost (W for NCHW, C for channels_last), so
// neighbouring threads store to neighbouring addresses.
//  * pool, P = 2 (the common case): the thread computes its 2 x 2 window of conv outputs in one
//    pass over the taps, each weight load feeding four FMAs; other P: the P x P conv outputs one
//    after the other.
//  * upsample: the thread computes the single conv output that pixel_shuffle maps to it.
// The tap loops run taps outer (bounds checked once per tap; out-of-image taps are skipped, which
// is the zero padding) and input channels inner (two pointer bumps and an FMA, unrolled by 2).
// Loads go through the read-only cache (__ldg); accumulation is fp32, with one rounding at the
// store. The square kernel sizes 1, 3 and 5 are compile-time constants (fully unrolled taps);
// other sizes use runtime-bounded loops.
//
// The per-element functions are __host__ __device__: emulate_*_on_host runs exactly the same code
// on the CPU, which lets the indexing be tested on machines without a GPU.
#include "conv_relu.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

// Device-only unrolling pragmas (the host compiler would warn about them). FC_UNROLL_TAPS(K):
// fully unrolled for a compile-time kernel size K > 0, not unrolled for a runtime one (K = 0).
#if defined(__CUDA_ARCH__)
#define FC_PRAGMA(x) _Pragma(#x)
#define FC_UNROLL FC_PRAGMA(unroll)
#define FC_UNROLL_TAPS(K) FC_PRAGMA(unroll((K) > 0 ? (K) : 1))
#define FC_UNROLL_N(n) FC_PRAGMA(unroll n)
#else
#define FC_UNROLL
#define FC_UNROLL_TAPS(K)
#define FC_UNROLL_N(n)
#endif

namespace fastcodec::cuda {

namespace {

using i64 = std::int64_t;

constexpr int kThreads = 256;
constexpr i64 kMaxBlocks = i64{1} << 19;  // the grid-stride loop covers anything larger

// ---- element types -----------------------------------------------------------------------

__host__ __device__ __forceinline__ float to_float(float v) { return v; }
__host__ __device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__host__ __device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
struct FromFloat;
template <>
struct FromFloat<float> {
    __host__ __device__ __forceinline__ static float apply(float v) { return v; }
};
template <>
struct FromFloat<__half> {
    __host__ __device__ __forceinline__ static __half apply(float v) { return __float2half_rn(v); }
};
template <>
struct FromFloat<__nv_bfloat16> {
    __host__ __device__ __forceinline__ static __nv_bfloat16 apply(float v) {
        return __float2bfloat16_rn(v);
    }
};

template <typename T>
__host__ __device__ __forceinline__ float load(const T* p) {
#if defined(__CUDA_ARCH__)
    return to_float(__ldg(p));
#else
    return to_float(*p);
#endif
}

// q = a / b, returns a % b, for 0 <= a and 1 <= b; 32-bit division when both fit (64-bit
// division is a slow subroutine call on the GPU).
__host__ __device__ __forceinline__ i64 divmod(i64 a, i64 b, i64& q) {
    if (((a | b) >> 32) == 0) {
        const std::uint32_t q32 = static_cast<std::uint32_t>(a) / static_cast<std::uint32_t>(b);
        q = q32;
        return a - static_cast<i64>(q32) * b;
    }
    q = a / b;
    return a - q * b;
}

// ReLU that keeps NaN (like torch.relu): NaN < 0 is false.
__host__ __device__ __forceinline__ float relu(float v) { return v < 0.f ? 0.f : v; }

// max that propagates NaN (like max_pool2d).
__host__ __device__ __forceinline__ float max_nan(float acc, float v) {
    return (v > acc || v != v) ? v : acc;
}

// ---- shared conv geometry ----------------------------------------------------------------

struct ConvGeometry {
    const void* x;
    const void* w;
    const void* b;  // nullptr = no bias
    i64 cin, h, w_in;
    i64 xs0, xs1, xs2, xs3;  // element strides of x
    int kh, kw, stride, pad_top, pad_left;
};

// conv output (before ReLU) at batch n, output channel co, position (oh, ow), fp32 accumulation.
template <typename T, int KH, int KW>
__host__ __device__ __forceinline__ float conv_at(const ConvGeometry& g, i64 n, i64 co, i64 oh,
                                                  i64 ow) {
    const int kh = KH > 0 ? KH : g.kh;
    const int kw = KW > 0 ? KW : g.kw;
    const T* x = static_cast<const T*>(g.x) + n * g.xs0;
    const T* w = static_cast<const T*>(g.w) + co * (g.cin * kh * kw);  // w[co, 0, 0, 0]
    float acc = g.b != nullptr ? load(static_cast<const T*>(g.b) + co) : 0.f;
    const i64 ih0 = oh * g.stride - g.pad_top;
    const i64 iw0 = ow * g.stride - g.pad_left;
    // Taps outer (unrolled for the fixed sizes, bounds checked once per tap), channels inner:
    // few live registers, and the inner loop is two pointer bumps and an FMA.
    const i64 khw = static_cast<i64>(kh) * kw;
    FC_UNROLL_TAPS(KH)
    for (int ky = 0; ky < kh; ++ky) {
        const i64 ih = ih0 + ky;
        if (ih < 0 || ih >= g.h) continue;
        FC_UNROLL_TAPS(KW)
        for (int kx = 0; kx < kw; ++kx) {
            const i64 iw = iw0 + kx;
            if (iw < 0 || iw >= g.w_in) continue;
            const T* xp = x + ih * g.xs2 + iw * g.xs3;
            const T* wp = w + (ky * kw + kx);
            FC_UNROLL_N(2)  // two channels' loads in flight; more costs occupancy
            for (i64 ci = 0; ci < g.cin; ++ci) {
                acc = fmaf(load(xp), load(wp), acc);
                xp += g.xs1;
                wp += khw;
            }
        }
    }
    return acc;
}

// The 2 x 2 conv outputs (oh0 + dy, ow0 + dx), dy, dx in {0, 1}, in one pass: every weight
// load serves four FMAs. acc = {(0,0), (0,1), (1,0), (1,1)}; each output sums its taps in the same
// order as conv_at, so the results are identical to four conv_at calls.
template <typename T, int KH, int KW>
__host__ __device__ __forceinline__ void conv_window2x2(const ConvGeometry& g, i64 n, i64 co,
                                                        i64 oh0, i64 ow0, float (&acc)[4]) {
    const int kh = KH > 0 ? KH : g.kh;
    const int kw = KW > 0 ? KW : g.kw;
    const T* x = static_cast<const T*>(g.x) + n * g.xs0;
    const T* w = static_cast<const T*>(g.w) + co * (g.cin * kh * kw);
    const float bias = g.b != nullptr ? load(static_cast<const T*>(g.b) + co) : 0.f;
    acc[0] = acc[1] = acc[2] = acc[3] = bias;
    const i64 s = g.stride;
    const i64 ih0 = oh0 * s - g.pad_top;
    const i64 iw0 = ow0 * s - g.pad_left;
    const i64 dyo = s * g.xs2, dxo = s * g.xs3;  // offsets of the second row / column
    const i64 khw = static_cast<i64>(kh) * kw;
    FC_UNROLL_TAPS(KH)
    for (int ky = 0; ky < kh; ++ky) {
        const i64 iha = ih0 + ky, ihb = iha + s;
        const bool ra = iha >= 0 && iha < g.h, rb = ihb >= 0 && ihb < g.h;
        if (!ra && !rb) continue;
        FC_UNROLL_TAPS(KW)
        for (int kx = 0; kx < kw; ++kx) {
            const i64 iwa = iw0 + kx, iwb = iwa + s;
            const bool ca = iwa >= 0 && iwa < g.w_in, cb = iwb >= 0 && iwb < g.w_in;
            if (!ca && !cb) continue;
            const bool v00 = ra && ca, v01 = ra && cb, v10 = rb && ca, v11 = rb && cb;
            i64 off = iha * g.xs2 + iwa * g.xs3;  // of (iha, iwa); dereferenced only when valid
            const T* wp = w + (ky * kw + kx);
            FC_UNROLL_N(2)  // two channels' loads in flight; more costs occupancy
            for (i64 ci = 0; ci < g.cin; ++ci) {
                const float wv = load(wp);
                if (v00) acc[0] = fmaf(load(x + off), wv, acc[0]);
                if (v01) acc[1] = fmaf(load(x + (off + dxo)), wv, acc[1]);
                if (v10) acc[2] = fmaf(load(x + (off + dyo)), wv, acc[2]);
                if (v11) acc[3] = fmaf(load(x + (off + dyo + dxo)), wv, acc[3]);
                off += g.xs1;
                wp += khw;
            }
        }
    }
}

ConvGeometry make_geometry(std::uintptr_t x, std::uintptr_t w, std::uintptr_t b, i64 cin, i64 h,
                           i64 w_in, const i64* xs, int kh, int kw, int stride, int pad_top,
                           int pad_left) {
    ConvGeometry g{};
    g.x = reinterpret_cast<const void*>(x);
    g.w = reinterpret_cast<const void*>(w);
    g.b = reinterpret_cast<const void*>(b);
    g.cin = cin;
    g.h = h;
    g.w_in = w_in;
    g.xs0 = xs[0];
    g.xs1 = xs[1];
    g.xs2 = xs[2];
    g.xs3 = xs[3];
    g.kh = kh;
    g.kw = kw;
    g.stride = stride;
    g.pad_top = pad_top;
    g.pad_left = pad_left;
    return g;
}

// Channels innermost when the output's channel stride is the unit one (channels_last).
bool channels_innermost(const i64* os) { return os[1] == 1 && os[3] != 1; }

i64 grid_for(i64 total) {
    const i64 blocks = (total + kThreads - 1) / kThreads;
    return blocks < kMaxBlocks ? blocks : kMaxBlocks;
}

// ---- conv + ReLU + pool ------------------------------------------------------------------

struct PoolParams {
    ConvGeometry g;
    void* out;
    i64 n, cout, ph, pw;     // pooled output sizes
    i64 os0, os1, os2, os3;  // element strides of out
    i64 total;
    int pool_size;
    bool channels_inner;
};

// PT = 2: the 2 x 2 window in one pass (conv_window2x2); PT = 0: any P, one conv output at a time.
template <typename T, int KH, int KW, int PT, bool kMax>
__host__ __device__ __forceinline__ void pool_element(const PoolParams& p, i64 idx) {
    i64 n, co, py, px, r;
    if (p.channels_inner) {
        co = divmod(idx, p.cout, r);
        px = divmod(r, p.pw, r);
        py = divmod(r, p.ph, n);
    } else {
        px = divmod(idx, p.pw, r);
        py = divmod(r, p.ph, r);
        co = divmod(r, p.cout, n);
    }
    const int P = PT > 0 ? PT : p.pool_size;
    float acc = 0.f;  // ReLU outputs are >= 0 (or NaN), so 0 is the max identity too
    if constexpr (PT == 2) {
        float v[4];
        conv_window2x2<T, KH, KW>(p.g, n, co, py * 2, px * 2, v);
        FC_UNROLL
        for (int q = 0; q < 4; ++q) acc = kMax ? max_nan(acc, relu(v[q])) : acc + relu(v[q]);
    } else {
        for (int dy = 0; dy < P; ++dy) {
            for (int dx = 0; dx < P; ++dx) {
                const float v = relu(conv_at<T, KH, KW>(p.g, n, co, py * P + dy, px * P + dx));
                acc = kMax ? max_nan(acc, v) : acc + v;
            }
        }
    }
    if (!kMax) acc = acc / static_cast<float>(static_cast<i64>(P) * P);
    T* out = static_cast<T*>(p.out);
    out[n * p.os0 + co * p.os1 + py * p.os2 + px * p.os3] = FromFloat<T>::apply(acc);
}

template <typename T, int KH, int KW, int PT, bool kMax>
__global__ void conv_relu_pool_kernel(const PoolParams p) {
    const i64 step = static_cast<i64>(gridDim.x) * blockDim.x;
    for (i64 i = static_cast<i64>(blockIdx.x) * blockDim.x + threadIdx.x; i < p.total; i += step) {
        pool_element<T, KH, KW, PT, kMax>(p, i);
    }
}

template <typename T, int KH, int KW, int PT, bool kMax>
cudaError_t run_pool(const PoolParams& p, cudaStream_t stream, bool on_host) {
    if (on_host) {
        for (i64 i = 0; i < p.total; ++i) pool_element<T, KH, KW, PT, kMax>(p, i);
        return cudaSuccess;
    }
    const dim3 grid(static_cast<unsigned>(grid_for(p.total)));
    (void)cudaGetLastError();  // report this launch's status, not an earlier one
    conv_relu_pool_kernel<T, KH, KW, PT, kMax><<<grid, kThreads, 0, stream>>>(p);
    return cudaGetLastError();
}

// Compiled variants (each one is a kernel per dtype and pool kind): the common 2 x 2 pooling
// with 1x1, 3x3 and 5x5 kernels fully unrolled; every other combination runs the generic kernel.
template <typename T, bool kMax>
cudaError_t dispatch_pool_shape(const PoolParams& p, cudaStream_t stream, bool on_host) {
    const int kh = p.g.kh, kw = p.g.kw;
    if (p.pool_size == 2) {
        if (kh == 1 && kw == 1) return run_pool<T, 1, 1, 2, kMax>(p, stream, on_host);
        if (kh == 3 && kw == 3) return run_pool<T, 3, 3, 2, kMax>(p, stream, on_host);
        if (kh == 5 && kw == 5) return run_pool<T, 5, 5, 2, kMax>(p, stream, on_host);
        return run_pool<T, 0, 0, 2, kMax>(p, stream, on_host);
    }
    return run_pool<T, 0, 0, 0, kMax>(p, stream, on_host);
}

template <typename T>
cudaError_t dispatch_pool_kind(const PoolParams& p, PoolKind kind, cudaStream_t stream,
                               bool on_host) {
    return kind == PoolKind::kMax ? dispatch_pool_shape<T, true>(p, stream, on_host)
                                  : dispatch_pool_shape<T, false>(p, stream, on_host);
}

cudaError_t conv_relu_pool_impl(const ConvReluPoolArgs& a, cudaStream_t stream, bool on_host) {
    if (check_args(a) != nullptr) return cudaErrorInvalidValue;
    PoolParams p{};
    p.g = make_geometry(a.x, a.w, a.b, a.cin, a.h, a.w_in, a.x_strides, a.kh, a.kw, a.stride,
                        a.pad_top, a.pad_left);
    p.out = reinterpret_cast<void*>(a.out);
    p.n = a.n;
    p.cout = a.cout;
    p.ph = a.out_h / a.pool_size;
    p.pw = a.out_w / a.pool_size;
    p.os0 = a.out_strides[0];
    p.os1 = a.out_strides[1];
    p.os2 = a.out_strides[2];
    p.os3 = a.out_strides[3];
    p.total = p.n * p.cout * p.ph * p.pw;
    p.pool_size = a.pool_size;
    p.channels_inner = channels_innermost(a.out_strides);
    if (p.total == 0) return cudaSuccess;
    switch (a.dtype) {
        case DType::kFloat32: return dispatch_pool_kind<float>(p, a.pool, stream, on_host);
        case DType::kFloat16: return dispatch_pool_kind<__half>(p, a.pool, stream, on_host);
        case DType::kBFloat16:
            return dispatch_pool_kind<__nv_bfloat16>(p, a.pool, stream, on_host);
    }
    return cudaErrorInvalidValue;
}

// ---- conv + ReLU + pixel shuffle ---------------------------------------------------------

struct UpsampleParams {
    ConvGeometry g;
    void* out;
    i64 n, c, oh, ow;        // output sizes: C = Cout / s^2, oh = out_h * s, ow = out_w * s
    i64 os0, os1, os2, os3;  // element strides of out
    i64 total;
    int scale;
    bool channels_inner;
};

template <typename T, int KH, int KW>
__host__ __device__ __forceinline__ void upsample_element(const UpsampleParams& p, i64 idx) {
    i64 n, c, y, x;
    i64 r;
    if (p.channels_inner) {
        c = divmod(idx, p.c, r);
        x = divmod(r, p.ow, r);
        y = divmod(r, p.oh, n);
    } else {
        x = divmod(idx, p.ow, r);
        y = divmod(r, p.oh, r);
        c = divmod(r, p.c, n);
    }
    const i64 s = p.scale;
    i64 cy, cx;                                // conv output position
    const i64 sy = divmod(y, s, cy), sx = divmod(x, s, cx);
    const i64 co = (c * s + sy) * s + sx;      // pixel_shuffle channel
    const float v = relu(conv_at<T, KH, KW>(p.g, n, co, cy, cx));
    T* out = static_cast<T*>(p.out);
    out[n * p.os0 + c * p.os1 + y * p.os2 + x * p.os3] = FromFloat<T>::apply(v);
}

template <typename T, int KH, int KW>
__global__ void conv_relu_upsample_kernel(const UpsampleParams p) {
    const i64 step = static_cast<i64>(gridDim.x) * blockDim.x;
    for (i64 i = static_cast<i64>(blockIdx.x) * blockDim.x + threadIdx.x; i < p.total; i += step) {
        upsample_element<T, KH, KW>(p, i);
    }
}

template <typename T, int KH, int KW>
cudaError_t run_upsample(const UpsampleParams& p, cudaStream_t stream, bool on_host) {
    if (on_host) {
        for (i64 i = 0; i < p.total; ++i) upsample_element<T, KH, KW>(p, i);
        return cudaSuccess;
    }
    const dim3 grid(static_cast<unsigned>(grid_for(p.total)));
    (void)cudaGetLastError();
    conv_relu_upsample_kernel<T, KH, KW><<<grid, kThreads, 0, stream>>>(p);
    return cudaGetLastError();
}

template <typename T>
cudaError_t dispatch_upsample_ksize(const UpsampleParams& p, cudaStream_t stream, bool on_host) {
    const int kh = p.g.kh, kw = p.g.kw;
    if (kh == 1 && kw == 1) return run_upsample<T, 1, 1>(p, stream, on_host);
    if (kh == 3 && kw == 3) return run_upsample<T, 3, 3>(p, stream, on_host);
    if (kh == 5 && kw == 5) return run_upsample<T, 5, 5>(p, stream, on_host);
    return run_upsample<T, 0, 0>(p, stream, on_host);
}

cudaError_t conv_relu_upsample_impl(const ConvReluUpsampleArgs& a, cudaStream_t stream,
                                    bool on_host) {
    if (check_args(a) != nullptr) return cudaErrorInvalidValue;
    const i64 s = a.scale;
    UpsampleParams p{};
    p.g = make_geometry(a.x, a.w, a.b, a.cin, a.h, a.w_in, a.x_strides, a.kh, a.kw, 1, a.pad_top,
                        a.pad_left);
    p.out = reinterpret_cast<void*>(a.out);
    p.n = a.n;
    p.c = a.cout / (s * s);
    p.oh = a.out_h * s;
    p.ow = a.out_w * s;
    p.os0 = a.out_strides[0];
    p.os1 = a.out_strides[1];
    p.os2 = a.out_strides[2];
    p.os3 = a.out_strides[3];
    p.total = p.n * p.c * p.oh * p.ow;
    p.scale = a.scale;
    p.channels_inner = channels_innermost(a.out_strides);
    if (p.total == 0) return cudaSuccess;
    switch (a.dtype) {
        case DType::kFloat32: return dispatch_upsample_ksize<float>(p, stream, on_host);
        case DType::kFloat16: return dispatch_upsample_ksize<__half>(p, stream, on_host);
        case DType::kBFloat16: return dispatch_upsample_ksize<__nv_bfloat16>(p, stream, on_host);
    }
    return cudaErrorInvalidValue;
}

// ---- argument checks ---------------------------------------------------------------------

bool valid_dtype(DType d) {
    return d == DType::kFloat32 || d == DType::kFloat16 || d == DType::kBFloat16;
}

// Checks shared by both ops; nullptr when fine.
const char* check_common(DType dtype, i64 n, i64 cin, i64 h, i64 w_in, i64 cout, int kh, int kw,
                         int pad_top, int pad_left, i64 out_h, i64 out_w) {
    if (!valid_dtype(dtype)) return "dtype must be float32, float16 or bfloat16";
    if (n < 0) return "batch size must be >= 0";
    if (cin < 1 || h < 1 || w_in < 1) return "input channels, height and width must be >= 1";
    if (cout < 1) return "output channels must be >= 1";
    if (kh < 1 || kh > kMaxKernelSize || kw < 1 || kw > kMaxKernelSize) {
        return "kernel height and width must be in 1..7";
    }
    if (pad_top < 0 || pad_left < 0) return "padding must be >= 0";
    if (out_h < 0 || out_w < 0) return "conv output size must be >= 0";
    return nullptr;
}

}  // namespace

// ---- public entry points -----------------------------------------------------------------

const char* check_args(const ConvReluPoolArgs& a) {
    if (const char* e = check_common(a.dtype, a.n, a.cin, a.h, a.w_in, a.cout, a.kh, a.kw,
                                     a.pad_top, a.pad_left, a.out_h, a.out_w)) {
        return e;
    }
    if (a.stride != 1 && a.stride != 2) return "stride must be 1 or 2";
    if (a.pool != PoolKind::kMax && a.pool != PoolKind::kAvg) return "pool must be max or avg";
    if (a.pool_size < 1) return "pool size must be >= 1";
    const bool empty = a.n == 0 || a.out_h / a.pool_size == 0 || a.out_w / a.pool_size == 0;
    if (!empty && (a.x == 0 || a.w == 0 || a.out == 0)) {
        return "x, weight and out pointers must be non-null";
    }
    return nullptr;
}

const char* check_args(const ConvReluUpsampleArgs& a) {
    if (const char* e = check_common(a.dtype, a.n, a.cin, a.h, a.w_in, a.cout, a.kh, a.kw,
                                     a.pad_top, a.pad_left, a.out_h, a.out_w)) {
        return e;
    }
    if (a.scale < 1) return "scale must be >= 1";
    if (a.cout % (static_cast<i64>(a.scale) * a.scale) != 0) {
        return "output channels of the conv must be a multiple of scale * scale";
    }
    const bool empty = a.n == 0 || a.out_h == 0 || a.out_w == 0;
    if (!empty && (a.x == 0 || a.w == 0 || a.out == 0)) {
        return "x, weight and out pointers must be non-null";
    }
    return nullptr;
}

cudaError_t launch_conv_relu_pool(const ConvReluPoolArgs& args, cudaStream_t stream) {
    return conv_relu_pool_impl(args, stream, false);
}

cudaError_t launch_conv_relu_upsample(const ConvReluUpsampleArgs& args, cudaStream_t stream) {
    return conv_relu_upsample_impl(args, stream, false);
}

cudaError_t emulate_conv_relu_pool_on_host(const ConvReluPoolArgs& args) {
    return conv_relu_pool_impl(args, nullptr, true);
}

cudaError_t emulate_conv_relu_upsample_on_host(const ConvReluUpsampleArgs& args) {
    return conv_relu_upsample_impl(args, nullptr, true);
}

}  // namespace fastcodec::cuda
