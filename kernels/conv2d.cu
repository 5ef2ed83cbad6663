/* conv2d.cu - im2col into bf16, one thread per column element (writes coalesced along pixels). */
#include "common.cuh"
#include "conv2d.cuh"

static __global__ void im2col_bf16_kernel(uint16_t *col, const float *x, int Cin, int H, int W, int k, int r0,
                                          int r1) {
    const int p = k / 2, kk = k * k;
    const size_t n = (size_t)(r1 - r0) * W, total = (size_t)Cin * kk * n;
    for (size_t o = blockIdx.x * (size_t)blockDim.x + threadIdx.x; o < total;
         o += (size_t)gridDim.x * blockDim.x) {
        const int row = (int)(o / n);
        const size_t pix = o % n;
        const int c = row / kk, ky = (row / k) % k, kx = row % k;
        const int sy = r0 + (int)(pix / W) + ky - p, sx = (int)(pix % W) + kx - p;
        float v = 0.0f;
        if (sy >= 0 && sy < H && sx >= 0 && sx < W) v = x[((size_t)c * H + sy) * W + sx];
        col[o] = wm_f32_to_bf16(v);
    }
}

extern "C" cudaError_t wm_cuda_im2col_bf16(uint16_t *col, const float *x, int Cin, int H, int W, int k,
                                           int r0, int r1, cudaStream_t s) {
    const size_t total = (size_t)Cin * k * k * (size_t)(r1 - r0) * W;
    const int threads = 256;
    if (total)
        im2col_bf16_kernel<<<wm_grid_for(total, threads), threads, 0, s>>>(col, x, Cin, H, W, k, r0, r1);
    return cudaGetLastError();
}
