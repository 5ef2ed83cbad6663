/* elementwise.cu - pointwise ops. Products and sums use the explicitly rounded intrinsics
 * (__fmul_rn, __fadd_rn) so nvcc does not contract them into FMAs: the results then match the CPU
 * reference (compiled without FMA) bit for bit wherever the math library is not involved. */
#include "common.cuh"
#include "elementwise.cuh"

#define GRID_STRIDE(i, n)                                                                                    \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n);                                  \
         i += (size_t)gridDim.x * blockDim.x)

static const int THREADS = 256;

static __global__ void silu_kernel(float *x, size_t n) {
    GRID_STRIDE(i, n) {
        float v = x[i];
        x[i] = v / (1.0f + expf(-v));
    }
}
static __global__ void gelu_tanh_kernel(float *x, size_t n) {
    const float c = 0.7978845608028654f; /* sqrt(2/pi) */
    GRID_STRIDE(i, n) {
        float v = x[i];
        float v3 = __fmul_rn(__fmul_rn(__fmul_rn(0.044715f, v), v), v);
        float t = tanhf(__fmul_rn(c, __fadd_rn(v, v3)));
        x[i] = __fmul_rn(__fmul_rn(0.5f, v), 1.0f + t);
    }
}
/* GELU (tanh) in place on bf16: the FFN hidden as the first GEMM wrote it */
static __device__ __forceinline__ uint16_t gelu_tanh_bf16(uint16_t b) {
    const float c = 0.7978845608028654f;
    const float v = wm_bf16_to_f32(b);
    const float v3 = __fmul_rn(__fmul_rn(__fmul_rn(0.044715f, v), v), v);
    const float t = tanhf(__fmul_rn(c, __fadd_rn(v, v3)));
    return wm_f32_to_bf16(__fmul_rn(__fmul_rn(0.5f, v), 1.0f + t));
}
static __global__ void gelu_tanh_bf16_kernel(uint16_t *x, size_t n) { GRID_STRIDE(i, n) x[i] = gelu_tanh_bf16(x[i]); }
/* 8 values (16 bytes) per access: the FFN's hidden is the model's largest activation (4680 x 8960 at
 * Wan-1.3B shapes), and 2-byte accesses left this pass well short of the memory's speed */
static __global__ void gelu_tanh_bf16x8_kernel(uint4 *x, unsigned n8) {
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n8; i += gridDim.x * blockDim.x) {
        union {
            uint4 u;
            uint16_t h[8];
        } v;
        v.u = x[i];
#pragma unroll
        for (int j = 0; j < 8; j++) v.h[j] = gelu_tanh_bf16(v.h[j]);
        x[i] = v.u;
    }
}
static __global__ void relu_kernel(float *x, size_t n) { GRID_STRIDE(i, n) x[i] = x[i] > 0.0f ? x[i] : 0.0f; }
static __global__ void axpby_kernel(float *y, float a, const float *x, float b, size_t n) {
    GRID_STRIDE(i, n) y[i] = __fadd_rn(__fmul_rn(a, x[i]), __fmul_rn(b, y[i]));
}
static __global__ void add_kernel(float *y, const float *x, size_t n) {
    GRID_STRIDE(i, n) y[i] = __fadd_rn(y[i], x[i]);
}
static __global__ void fill_kernel(float *x, float v, size_t n) { GRID_STRIDE(i, n) x[i] = v; }
static __global__ void clamp_kernel(float *x, size_t n, float lo, float hi) {
    GRID_STRIDE(i, n) {
        const float v = x[i];
        x[i] = v < lo ? lo : (v > hi ? hi : v); /* the CPU's comparisons: NaN passes through */
    }
}
static __global__ void tanh_clamp_kernel(float *x, size_t n, float limit) {
    GRID_STRIDE(i, n) x[i] = __fmul_rn(tanhf(x[i] / limit), limit);
}
/* blockIdx.y = row - r0 (rows go in launches of at most 65535), blockIdx.x tiles the columns */
static __device__ __forceinline__ float widen(float v) { return v; }
static __device__ __forceinline__ float widen(uint16_t v) { return wm_bf16_to_f32(v); }
/* y fp32, or bf16 as a GEMM wrote it */
template <typename T>
static __global__ void gated_add_kernel(float *x, const T *y, int r0, int C, const float *gate, int stride,
                                        int rows_per_group) {
    const int r = r0 + blockIdx.y;
    const float *g = gate + (size_t)(r / rows_per_group) * stride;
    float *xr = x + (size_t)r * C;
    const T *yr = y + (size_t)r * C;
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x)
        xr[c] = __fadd_rn(xr[c], __fmul_rn(widen(yr[c]), g[c]));
}
static __global__ void add_bias_rows_kernel(float *y, const float *b, int N) {
    float *yr = y + (size_t)blockIdx.y * N;
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < N; c += gridDim.x * blockDim.x)
        yr[c] = __fadd_rn(yr[c], b[c]);
}
static __global__ void fill_channels_kernel(float *y, const float *b, size_t HW) {
    float *yc = y + (size_t)blockIdx.y * HW;
    const float v = b[blockIdx.y];
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < HW;
         i += (size_t)gridDim.x * blockDim.x)
        yc[i] = v;
}

/* grid for per-row kernels: x covers the columns, y the rows (at most 65535 rows per launch) */
#define ROW_CHUNK 65535

extern "C" cudaError_t wm_cuda_silu(float *x, size_t n, cudaStream_t s) {
    if (n) silu_kernel<<<wm_grid_for(n, THREADS), THREADS, 0, s>>>(x, n);
    return cudaGetLastError();
}
extern "C" cudaError_t wm_cuda_gelu_tanh_bf16(uint16_t *x, size_t n, cudaStream_t s) {
    if (n % 8 == 0 && (uintptr_t)x % 16 == 0 && n / 8 < ((size_t)1 << 32)) {
        if (n) gelu_tanh_bf16x8_kernel<<<wm_grid_for(n / 8, THREADS), THREADS, 0, s>>>((uint4 *)x, (unsigned)(n / 8));
    } else if (n) {
        gelu_tanh_bf16_kernel<<<wm_grid_for(n, THREADS), THREADS, 0, s>>>(x, n);
    }
    return cudaGetLastError();
}
extern "C" cudaError_t wm_cuda_gelu_tanh(float *x, size_t n, cudaStream_t s) {
    if (n) gelu_tanh_kernel<<<wm_grid_for(n, THREADS), THREADS, 0, s>>>(x, n);
    return cudaGetLastError();
}
extern "C" cudaError_t wm_cuda_relu(float *x, size_t n, cudaStream_t s) {
    if (n) relu_kernel<<<wm_grid_for(n, THREADS), THREADS, 0, s>>>(x, n);
    return cudaGetLastError();
}
extern "C" cudaError_t wm_cuda_axpby(float *y, float a, const float *x, float b, size_t n, cudaStream_t s) {
    if (n) axpby_kernel<<<wm_grid_for(n, THREADS), THREADS, 0, s>>>(y, a, x, b, n);
    return cudaGetLastError();
}
extern "C" cudaError_t wm_cuda_add(float *y, const float *x, size_t n, cudaStream_t s) {
    if (n) add_kernel<<<wm_grid_for(n, THREADS), THREADS, 0, s>>>(y, x, n);
    return cudaGetLastError();
}
extern "C" cudaError_t wm_cuda_fill(float *x, float v, size_t n, cudaStream_t s) {
    if (n) fill_kernel<<<wm_grid_for(n, THREADS), THREADS, 0, s>>>(x, v, n);
    return cudaGetLastError();
}
extern "C" cudaError_t wm_cuda_clamp(float *x, size_t n, float lo, float hi, cudaStream_t s) {
    if (n) clamp_kernel<<<wm_grid_for(n, THREADS), THREADS, 0, s>>>(x, n, lo, hi);
    return cudaGetLastError();
}
extern "C" cudaError_t wm_cuda_tanh_clamp(float *x, size_t n, float limit, cudaStream_t s) {
    if (n) tanh_clamp_kernel<<<wm_grid_for(n, THREADS), THREADS, 0, s>>>(x, n, limit);
    return cudaGetLastError();
}
template <typename T>
static cudaError_t launch_gated_add(float *x, const T *y, int M, int C, const float *gate, int stride,
                                   int rows_per_group, cudaStream_t s) {
    if (M <= 0 || C <= 0) return cudaSuccess;
    const unsigned gx = (unsigned)((C + THREADS - 1) / THREADS);
    for (int r0 = 0; r0 < M; r0 += ROW_CHUNK) {
        const int nr = M - r0 < ROW_CHUNK ? M - r0 : ROW_CHUNK;
        gated_add_kernel<T><<<dim3(gx, (unsigned)nr), THREADS, 0, s>>>(x, y, r0, C, gate, stride,
                                                                       rows_per_group > 0 ? rows_per_group : 1);
    }
    return cudaGetLastError();
}
extern "C" cudaError_t wm_cuda_gated_add(float *x, const float *y, int M, int C, const float *gate,
                                         int stride, int rows_per_group, cudaStream_t s) {
    return launch_gated_add(x, y, M, C, gate, stride, rows_per_group, s);
}
extern "C" cudaError_t wm_cuda_gated_add_bf16(float *x, const uint16_t *y, int M, int C, const float *gate,
                                              int stride, int rows_per_group, cudaStream_t s) {
    return launch_gated_add(x, y, M, C, gate, stride, rows_per_group, s);
}
extern "C" cudaError_t wm_cuda_add_bias_rows(float *y, const float *b, int M, int N, cudaStream_t s) {
    if (M <= 0 || N <= 0) return cudaSuccess;
    const unsigned gx = (unsigned)((N + THREADS - 1) / THREADS);
    for (int r0 = 0; r0 < M; r0 += ROW_CHUNK) {
        const int nr = M - r0 < ROW_CHUNK ? M - r0 : ROW_CHUNK;
        add_bias_rows_kernel<<<dim3(gx, (unsigned)nr), THREADS, 0, s>>>(y + (size_t)r0 * N, b, N);
    }
    return cudaGetLastError();
}
extern "C" cudaError_t wm_cuda_fill_channels(float *y, const float *b, int C, size_t HW, cudaStream_t s) {
    if (C <= 0 || HW == 0) return cudaSuccess;
    size_t gx = (HW + THREADS - 1) / THREADS;
    if (gx > 1024) gx = 1024;
    for (int c0 = 0; c0 < C; c0 += ROW_CHUNK) {
        const int nc = C - c0 < ROW_CHUNK ? C - c0 : ROW_CHUNK;
        fill_channels_kernel<<<dim3((unsigned)gx, (unsigned)nc), THREADS, 0, s>>>(y + (size_t)c0 * HW, b + c0,
                                                                                  HW);
    }
    return cudaGetLastError();
}
