/* image.cu - bf16 NHWC image ops of the decoder (image.cuh). They only move memory, so each thread
 * handles 8 channels (one 16-byte vector) of a pixel. */
#include "common.cuh"
#include "image.cuh"

#define THREADS 256

static inline int aligned16(const void *p) { return (uintptr_t)p % 16 == 0; }

union vec8 {
    uint4 u;
    uint16_t h[8];
};

/* Indices are 32-bit (the launchers refuse larger images): 64-bit division costs more than these
 * kernels' memory traffic. */
#define FITS32(n) ((n) < ((size_t)1 << 32))

static __global__ void epilogue_kernel(uint4 *y, const float *bias, const uint4 *res, int C, int C8, unsigned P,
                                       int relu) {
    const unsigned total = P * C8;
    for (unsigned o = blockIdx.x * blockDim.x + threadIdx.x; o < total; o += gridDim.x * blockDim.x) {
        const int c0 = (int)(o % C8) * 8;
        vec8 v, r;
        v.u = y[o];
        if (res) r.u = res[o];
#pragma unroll
        for (int j = 0; j < 8; j++) {
            float f = wm_bf16_to_f32(v.h[j]);
            if (bias && c0 + j < C) f += bias[c0 + j];
            if (res) f += wm_bf16_to_f32(r.h[j]);
            if (relu) f = fmaxf(f, 0.0f);
            v.h[j] = wm_f32_to_bf16(f);
        }
        y[o] = v.u;
    }
}

extern "C" cudaError_t wm_cuda_img_epilogue(uint16_t *y, const float *bias, const uint16_t *res, int C, int Cp,
                                            size_t P, int relu, cudaStream_t s) {
    const size_t total = P * (size_t)(Cp / 8);
    if (Cp % 8 || C > Cp || !aligned16(y) || !aligned16(res) || !FITS32(total)) return cudaErrorInvalidValue;
    if (total)
        epilogue_kernel<<<wm_grid_for(total, THREADS), THREADS, 0, s>>>((uint4 *)y, bias, (const uint4 *)res, C,
                                                                        Cp / 8, (unsigned)P, relu);
    return cudaGetLastError();
}

/* one thread per output pixel vector: reads repeat (each input vector feeds 4), writes stream */
static __global__ void upsample2x_kernel(uint4 *y, const uint4 *x, int C8, int H, int W) {
    const unsigned W2 = 2u * W, total = 4u * H * W * C8;
    for (unsigned o = blockIdx.x * blockDim.x + threadIdx.x; o < total; o += gridDim.x * blockDim.x) {
        const int g = (int)(o % C8);
        const unsigned pix = o / C8, r = pix / W2, c = pix % W2;
        y[o] = x[((r / 2) * W + c / 2) * C8 + g];
    }
}

extern "C" cudaError_t wm_cuda_img_upsample2x(uint16_t *y, const uint16_t *x, int Cp, int H, int W,
                                              cudaStream_t s) {
    const size_t total = 4 * (size_t)H * W * (Cp / 8);
    if (Cp % 8 || !aligned16(y) || !aligned16(x) || !FITS32(total)) return cudaErrorInvalidValue;
    if (total)
        upsample2x_kernel<<<wm_grid_for(total, THREADS), THREADS, 0, s>>>((uint4 *)y, (const uint4 *)x, Cp / 8, H,
                                                                          W);
    return cudaGetLastError();
}

/* C a multiple of 8: whole vectors from a or b */
static __global__ void concat_vec_kernel(uint4 *y, const uint4 *a, const uint4 *b, int C8, unsigned P) {
    const unsigned total = P * 2 * C8;
    for (unsigned o = blockIdx.x * blockDim.x + threadIdx.x; o < total; o += gridDim.x * blockDim.x) {
        const unsigned pix = o / (2 * C8);
        const int g = (int)(o % (2 * C8));
        y[o] = g < C8 ? a[pix * C8 + g] : b[pix * C8 + g - C8];
    }
}

/* any C: one thread per output vector, element by element (small test configs only) */
static __global__ void concat_any_kernel(uint4 *y, const uint16_t *a, const uint16_t *b, int C, int Ca, int Cy8,
                                         unsigned P) {
    const unsigned total = P * Cy8;
    for (unsigned o = blockIdx.x * blockDim.x + threadIdx.x; o < total; o += gridDim.x * blockDim.x) {
        const unsigned pix = o / Cy8;
        const int c0 = (int)(o % Cy8) * 8;
        vec8 v;
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const int c = c0 + j;
            v.h[j] = c < C ? a[pix * Ca + c] : c < 2 * C ? b[pix * Ca + c - C] : (uint16_t)0;
        }
        y[o] = v.u;
    }
}

extern "C" cudaError_t wm_cuda_img_concat(uint16_t *y, const uint16_t *a, const uint16_t *b, int C, size_t P,
                                          cudaStream_t s) {
    const int Ca = (C + 7) / 8 * 8, Cy = (2 * C + 7) / 8 * 8;
    if (!aligned16(y) || !aligned16(a) || !aligned16(b) || !FITS32(P * Cy)) return cudaErrorInvalidValue;
    if (C % 8 == 0) {
        const size_t total = P * 2 * (size_t)(C / 8);
        if (total)
            concat_vec_kernel<<<wm_grid_for(total, THREADS), THREADS, 0, s>>>((uint4 *)y, (const uint4 *)a,
                                                                              (const uint4 *)b, C / 8, (unsigned)P);
    } else {
        const size_t total = P * (size_t)(Cy / 8);
        if (total)
            concat_any_kernel<<<wm_grid_for(total, THREADS), THREADS, 0, s>>>((uint4 *)y, a, b, C, Ca, Cy / 8, (unsigned)P);
    }
    return cudaGetLastError();
}
