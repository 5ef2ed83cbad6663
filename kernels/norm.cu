/* norm.cu - one thread block per row, warp-shuffle block reductions, two-pass mean/variance in fp32
 * like the CPU reference (and PyTorch's LayerNorm on fp32). Rows are re-read from global memory
 * for each pass; at C = 1536 a row is 6 KB and stays in L1. */
#include "common.cuh"
#include "norm.cuh"

static const int THREADS = 256;

static __device__ __forceinline__ void row_stats(const float *xr, int C, float eps, float *sh, float *mean,
                                                 float *rstd) {
    float s = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) s += xr[c];
    const float m = wm_block_sum(s, sh) / (float)C;
    float v = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const float d = xr[c] - m;
        v = __fadd_rn(v, __fmul_rn(d, d));
    }
    v = wm_block_sum(v, sh);
    *mean = m;
    *rstd = 1.0f / sqrtf(v / (float)C + eps);
}

/* The LayerNorm outputs come as fp32 or, for a GEMM's input, as bf16: the same values, rounded once. */
static __device__ __forceinline__ void put(float *p, float v) { *p = v; }
static __device__ __forceinline__ void put(uint16_t *p, float v) { *p = wm_f32_to_bf16(v); }

template <typename T>
static __global__ void layernorm_mod_kernel(T *y, const float *x, int C, float eps, const float *shift,
                                            const float *scale, int stride, int rows_per_group) {
    __shared__ float sh[32];
    const int r = blockIdx.x;
    const float *xr = x + (size_t)r * C;
    T *yr = y + (size_t)r * C;
    float m, rs;
    row_stats(xr, C, eps, sh, &m, &rs);
    if (!scale) {
        for (int c = threadIdx.x; c < C; c += blockDim.x) put(&yr[c], __fmul_rn(xr[c] - m, rs));
        return;
    }
    const size_t g = (size_t)(r / rows_per_group) * stride;
    const float *sc = scale + g, *sf = shift + g;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        put(&yr[c], __fadd_rn(__fmul_rn(__fmul_rn(xr[c] - m, rs), 1.0f + sc[c]), sf[c]));
}

template <typename T>
static __global__ void layernorm_affine_kernel(T *y, const float *x, int C, float eps, const float *w,
                                               const float *b) {
    __shared__ float sh[32];
    const float *xr = x + (size_t)blockIdx.x * C;
    T *yr = y + (size_t)blockIdx.x * C;
    float m, rs;
    row_stats(xr, C, eps, sh, &m, &rs);
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float v = __fmul_rn(xr[c] - m, rs);
        if (w) v = __fmul_rn(v, w[c]);
        if (b) v = __fadd_rn(v, b[c]);
        put(&yr[c], v);
    }
}

/* in place on bf16 rows (the cross-attention's q from its GEMM), fp32 inside */
static __global__ void rmsnorm_bf16_kernel(uint16_t *x, int C, float eps, const float *w) {
    __shared__ float sh[32];
    uint16_t *xr = x + (size_t)blockIdx.x * C;
    float s = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const float v = wm_bf16_to_f32(xr[c]);
        s = __fadd_rn(s, __fmul_rn(v, v));
    }
    s = wm_block_sum(s, sh);
    const float rs = 1.0f / sqrtf(s / (float)C + eps);
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float v = __fmul_rn(wm_bf16_to_f32(xr[c]), rs);
        xr[c] = wm_f32_to_bf16(w ? __fmul_rn(v, w[c]) : v);
    }
}

static __global__ void rmsnorm_kernel(float *x, int C, float eps, const float *w) {
    __shared__ float sh[32];
    float *xr = x + (size_t)blockIdx.x * C;
    float s = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) s = __fadd_rn(s, __fmul_rn(xr[c], xr[c]));
    s = wm_block_sum(s, sh);
    const float rs = 1.0f / sqrtf(s / (float)C + eps);
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float v = __fmul_rn(xr[c], rs);
        xr[c] = w ? __fmul_rn(v, w[c]) : v;
    }
}

template <typename T>
static cudaError_t launch_layernorm_mod(T *y, const float *x, int M, int C, float eps, const float *shift,
                                        const float *scale, int stride, int rows_per_group, cudaStream_t s) {
    if (M <= 0 || C <= 0) return cudaSuccess;
    if (rows_per_group <= 0) rows_per_group = M;
    layernorm_mod_kernel<T><<<(unsigned)M, THREADS, 0, s>>>(y, x, C, eps, shift, scale, stride, rows_per_group);
    return cudaGetLastError();
}
template <typename T>
static cudaError_t launch_layernorm_affine(T *y, const float *x, int M, int C, float eps, const float *w,
                                           const float *b, cudaStream_t s) {
    if (M <= 0 || C <= 0) return cudaSuccess;
    layernorm_affine_kernel<T><<<(unsigned)M, THREADS, 0, s>>>(y, x, C, eps, w, b);
    return cudaGetLastError();
}

extern "C" cudaError_t wm_cuda_layernorm_mod(float *y, const float *x, int M, int C, float eps,
                                             const float *shift, const float *scale, int stride,
                                             int rows_per_group, cudaStream_t s) {
    return launch_layernorm_mod(y, x, M, C, eps, shift, scale, stride, rows_per_group, s);
}
extern "C" cudaError_t wm_cuda_layernorm_mod_bf16(uint16_t *y, const float *x, int M, int C, float eps,
                                                  const float *shift, const float *scale, int stride,
                                                  int rows_per_group, cudaStream_t s) {
    return launch_layernorm_mod(y, x, M, C, eps, shift, scale, stride, rows_per_group, s);
}
extern "C" cudaError_t wm_cuda_layernorm_affine(float *y, const float *x, int M, int C, float eps,
                                                const float *w, const float *b, cudaStream_t s) {
    return launch_layernorm_affine(y, x, M, C, eps, w, b, s);
}
extern "C" cudaError_t wm_cuda_layernorm_affine_bf16(uint16_t *y, const float *x, int M, int C, float eps,
                                                     const float *w, const float *b, cudaStream_t s) {
    return launch_layernorm_affine(y, x, M, C, eps, w, b, s);
}
extern "C" cudaError_t wm_cuda_rmsnorm(float *x, int M, int C, float eps, const float *w, cudaStream_t s) {
    if (M <= 0 || C <= 0) return cudaSuccess;
    rmsnorm_kernel<<<(unsigned)M, THREADS, 0, s>>>(x, C, eps, w);
    return cudaGetLastError();
}
extern "C" cudaError_t wm_cuda_rmsnorm_bf16(uint16_t *x, int M, int C, float eps, const float *w, cudaStream_t s) {
    if (M <= 0 || C <= 0) return cudaSuccess;
    rmsnorm_bf16_kernel<<<(unsigned)M, THREADS, 0, s>>>(x, C, eps, w);
    return cudaGetLastError();
}
