/* conv2d.cu - im2col of a bf16 NHWC image: one thread per 8 channels (16 bytes) of a column row, so
 * both the reads (along the input's channels) and the writes are 16-byte accesses in order. */
#include "common.cuh"
#include "conv2d.cuh"

static __global__ void im2col_nhwc_kernel(uint4 *col, const uint4 *x, int C8, int H, int W, int k, int r0,
                                          int r1) {
    const int p = k / 2, taps = k * k;
    const unsigned total = (unsigned)(r1 - r0) * W * taps * C8; /* the caller's band keeps it in range */
    for (unsigned o = blockIdx.x * blockDim.x + threadIdx.x; o < total; o += gridDim.x * blockDim.x) {
        const int g = (int)(o % C8);
        const unsigned t = o / C8;
        const int tap = (int)(t % taps);
        const unsigned pix = t / taps;
        const int sy = r0 + (int)(pix / W) + tap / k - p, sx = (int)(pix % W) + tap % k - p;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (sy >= 0 && sy < H && sx >= 0 && sx < W) v = x[((size_t)sy * W + sx) * C8 + g];
        col[o] = v;
    }
}

extern "C" cudaError_t wm_cuda_im2col_nhwc_bf16(uint16_t *col, const uint16_t *x, int Cp, int H, int W, int k,
                                                int r0, int r1, cudaStream_t s) {
    const size_t total = (size_t)(r1 - r0) * W * k * k * (Cp / 8);
    if (Cp % 8 || (uintptr_t)col % 16 || (uintptr_t)x % 16 || total >= ((size_t)1 << 32)) return cudaErrorInvalidValue;
    const int threads = 256;
    if (total)
        im2col_nhwc_kernel<<<wm_grid_for(total, threads), threads, 0, s>>>((uint4 *)col, (const uint4 *)x, Cp / 8,
                                                                           H, W, k, r0, r1);
    return cudaGetLastError();
}
