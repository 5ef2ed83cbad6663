/* rope.cu - one thread per (token, pair): the angle in float64 (pow, cos, sin like the CPU's tables),
 * cast to fp32, then the pair rotated in every head with unfused fp32 products, as on the CPU. */
#include "common.cuh"
#include "rope.cuh"

static __global__ void rope_kernel(float *x, int M, int H, int D, int64_t frame0, int gh, int gw) {
    const int np = D / 2, dt = D - 4 * (D / 6), dh = 2 * (D / 6);
    const int pt = dt / 2, ph = dh / 2;
    const size_t total = (size_t)M * np;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        const int r = (int)(i / np), p = (int)(i % np);
        const int axis = p < pt ? 0 : (p < pt + ph ? 1 : 2);
        const int j = axis == 0 ? p : (axis == 1 ? p - pt : p - pt - ph);
        const int adim = axis == 0 ? dt : dh;
        const int64_t pos = axis == 0 ? frame0 + r / (gh * gw) : (axis == 1 ? (r / gw) % gh : r % gw);
        const double ang = (double)pos * pow(10000.0, -(double)(2 * j) / (double)adim);
        const float cs = (float)cos(ang), sn = (float)sin(ang);
        float *xr = x + (size_t)r * H * D + 2 * p;
        for (int h = 0; h < H; h++, xr += D) {
            const float a = xr[0], b = xr[1];
            xr[0] = __fsub_rn(__fmul_rn(a, cs), __fmul_rn(b, sn));
            xr[1] = __fadd_rn(__fmul_rn(a, sn), __fmul_rn(b, cs));
        }
    }
}

extern "C" cudaError_t wm_cuda_rope(float *x, int M, int H, int D, int64_t frame0, int gh, int gw,
                                    cudaStream_t s) {
    if (M <= 0 || H <= 0 || D < 2) return cudaSuccess;
    const int threads = 128;
    rope_kernel<<<wm_grid_for((size_t)M * (D / 2), threads), threads, 0, s>>>(x, M, H, D, frame0, gh, gw);
    return cudaGetLastError();
}

/* One thread per (row, head, pair): a time pair is turned by the shift's angle (float64, as above),
 * the others are copied. */
static __global__ void kv_rope_shift_kernel(uint16_t *dst, const uint16_t *src, int64_t n, int H, int D, int64_t shift) {
    const int np = D / 2, pt = (D - 4 * (D / 6)) / 2;
    const size_t total = (size_t)n * H * np;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        const int p = (int)(i % np);
        const size_t at = (i / np) * D + 2 * p; /* (row, head) then the pair */
        if (p >= pt) {
            dst[at] = src[at];
            dst[at + 1] = src[at + 1];
            continue;
        }
        const double ang = (double)shift * pow(10000.0, -(double)(2 * p) / (double)(2 * pt));
        const float cs = (float)cos(ang), sn = (float)sin(ang);
        const float a = wm_bf16_to_f32(src[at]), b = wm_bf16_to_f32(src[at + 1]);
        dst[at] = wm_f32_to_bf16(__fsub_rn(__fmul_rn(a, cs), __fmul_rn(b, sn)));
        dst[at + 1] = wm_f32_to_bf16(__fadd_rn(__fmul_rn(a, sn), __fmul_rn(b, cs)));
    }
}

extern "C" cudaError_t wm_cuda_kv_rope_shift(uint16_t *dst, const uint16_t *src, int64_t n, int H, int D,
                                             int64_t time_shift, cudaStream_t s) {
    if (n <= 0 || H <= 0 || D < 2) return cudaSuccess;
    const int threads = 256;
    kv_rope_shift_kernel<<<wm_grid_for((size_t)n * H * (D / 2), threads), threads, 0, s>>>(dst, src, n, H, D, time_shift);
    return cudaGetLastError();
}
