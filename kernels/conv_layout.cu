/* conv_layout.cu - NCHW fp32 <-> NHWC bf16 as tiled transposes of the [C, P] matrix (P = H*W): a
 * block stages TILE_C channels x TILE_P positions in shared memory, so that both the fp32 side
 * (read or written along P, 128 bytes per warp) and the bf16 side (read or written along C, two
 * channels per 32-bit word, consecutive threads on consecutive words) are coalesced. A naive
 * one-thread-per-element kernel would stride by P*4 or Cp*2 bytes on one of the two sides. */
#include "common.cuh"
#include "conv_layout.cuh"

#define TILE_P 32 /* positions per tile: one warp reads or writes 32 fp32 = 128 bytes of a channel */
#define TILE_C 64 /* channels per tile: a whole NHWC row up to 64 channels is one contiguous run */

static const int THREADS = 256;

/* Grid: x over position tiles, y over channel tiles of Cp. */
static __global__ void nchw_f32_to_nhwc_bf16_kernel(uint16_t *out, const float *x, int C, int Cp, size_t P) {
    __shared__ float tile[TILE_C][TILE_P + 1]; /* +1: the column reads of the write phase spread over banks */
    const size_t p0 = (size_t)blockIdx.x * TILE_P;
    const int c0 = blockIdx.y * TILE_C;
    const int cw = min(TILE_C, Cp - c0); /* a multiple of 8: Cp is, and c0 is a multiple of 64 */
    const int pw = (int)min((size_t)TILE_P, P - p0);
    /* read along P: a warp takes the 32 positions of one channel; padded channels read as zero */
    for (int i = threadIdx.x; i < cw * TILE_P; i += blockDim.x) {
        const int cc = i / TILE_P, pp = i % TILE_P, c = c0 + cc;
        tile[cc][pp] = (c < C && pp < pw) ? x[(size_t)c * P + p0 + (size_t)pp] : 0.0f;
    }
    __syncthreads();
    /* write along C: one 32-bit word = channels (cc, cc+1) of one position, low half first (little
     * endian, as convert.cu packs); consecutive threads cover a row, then the next position */
    const int pairs = cw / 2;
    for (int i = threadIdx.x; i < pw * pairs; i += blockDim.x) {
        const int pp = i / pairs, cc = 2 * (i % pairs);
        const uint32_t v = (uint32_t)wm_f32_to_bf16(tile[cc][pp]) | ((uint32_t)wm_f32_to_bf16(tile[cc + 1][pp]) << 16);
        *(uint32_t *)(out + (p0 + (size_t)pp) * (size_t)Cp + (size_t)(c0 + cc)) = v;
    }
}

/* Grid: x over position tiles, y over channel tiles of C (padded channels are never read back). */
static __global__ void nhwc_bf16_to_nchw_f32_kernel(float *y, const uint16_t *in, const float *bias, int C, int Cp,
                                                    size_t P) {
    __shared__ float tile[TILE_C][TILE_P + 1];
    const size_t p0 = (size_t)blockIdx.x * TILE_P;
    const int c0 = blockIdx.y * TILE_C;
    const int cw = min(TILE_C, C - c0);
    /* whole words: an odd cw reads one padded channel more, which exists since Cp is even and >= C */
    const int pairs = (cw + 1) / 2;
    const int pw = (int)min((size_t)TILE_P, P - p0);
    for (int i = threadIdx.x; i < pw * pairs; i += blockDim.x) {
        const int pp = i / pairs, cc = 2 * (i % pairs);
        const uint32_t v = *(const uint32_t *)(in + (p0 + (size_t)pp) * (size_t)Cp + (size_t)(c0 + cc));
        tile[cc][pp] = wm_bf16_to_f32((uint16_t)(v & 0xFFFFu));
        tile[cc + 1][pp] = wm_bf16_to_f32((uint16_t)(v >> 16));
    }
    __syncthreads();
    for (int i = threadIdx.x; i < cw * TILE_P; i += blockDim.x) {
        const int cc = i / TILE_P, pp = i % TILE_P, c = c0 + cc;
        if (pp < pw) {
            const float v = tile[cc][pp];
            y[(size_t)c * P + p0 + (size_t)pp] = bias ? v + bias[c] : v;
        }
    }
}

/* One thread per output element (the filter is converted once per weight; gathers are fine). */
static __global__ void filter_to_krsc_kernel(uint16_t *out, const float *w, int Cout, int Cin, int k, int Coutp,
                                             int Cinp) {
    const size_t total = (size_t)Coutp * k * k * Cinp;
    for (size_t o = blockIdx.x * (size_t)blockDim.x + threadIdx.x; o < total; o += (size_t)gridDim.x * blockDim.x) {
        const int ci = (int)(o % (size_t)Cinp);
        const size_t rest = o / (size_t)Cinp; /* (co*k + ky)*k + kx */
        const int kx = (int)(rest % (size_t)k), ky = (int)((rest / (size_t)k) % (size_t)k);
        const int co = (int)(rest / ((size_t)k * k));
        float v = 0.0f;
        if (co < Cout && ci < Cin) v = w[(((size_t)co * Cin + ci) * k + ky) * k + kx];
        out[o] = wm_f32_to_bf16(v);
    }
}

/* Grid of a tiled transpose; 0 blocks in y (C == 0) or too many means nothing / invalid. */
static int tile_grid(dim3 *g, size_t P, int channels) {
    const size_t gx = (P + TILE_P - 1) / TILE_P, gy = ((size_t)channels + TILE_C - 1) / TILE_C;
    if (gx > 0x7FFFFFFFu || gy > 65535) return 0;
    *g = dim3((unsigned)gx, (unsigned)gy, 1);
    return 1;
}

extern "C" cudaError_t wm_cuda_nchw_f32_to_nhwc_bf16(uint16_t *out, const float *x, int C, int Cp, int H, int W,
                                                     cudaStream_t s) {
    if (C < 0 || Cp < C || Cp % 8 || H < 0 || W < 0 || (uintptr_t)out % 4) return cudaErrorInvalidValue;
    const size_t P = (size_t)H * W;
    if (P == 0 || Cp == 0) return cudaSuccess;
    dim3 grid;
    if (!tile_grid(&grid, P, Cp)) return cudaErrorInvalidValue;
    nchw_f32_to_nhwc_bf16_kernel<<<grid, THREADS, 0, s>>>(out, x, C, Cp, P);
    return cudaGetLastError();
}

extern "C" cudaError_t wm_cuda_nhwc_bf16_to_nchw_f32(float *y, const uint16_t *in, const float *bias, int C, int Cp,
                                                     int H, int W, cudaStream_t s) {
    if (C < 0 || Cp < C || Cp % 8 || H < 0 || W < 0 || (uintptr_t)in % 4) return cudaErrorInvalidValue;
    const size_t P = (size_t)H * W;
    if (P == 0 || C == 0) return cudaSuccess;
    dim3 grid;
    if (!tile_grid(&grid, P, C)) return cudaErrorInvalidValue;
    nhwc_bf16_to_nchw_f32_kernel<<<grid, THREADS, 0, s>>>(y, in, bias, C, Cp, P);
    return cudaGetLastError();
}

extern "C" cudaError_t wm_cuda_filter_f32_to_krsc_bf16(uint16_t *out, const float *w, int Cout, int Cin, int k,
                                                       int Coutp, int Cinp, cudaStream_t s) {
    if (Cout < 0 || Cin < 0 || k < 0 || Coutp < Cout || Cinp < Cin) return cudaErrorInvalidValue;
    const size_t total = (size_t)Coutp * k * k * Cinp;
    if (total)
        filter_to_krsc_kernel<<<wm_grid_for(total, THREADS), THREADS, 0, s>>>(out, w, Cout, Cin, k, Coutp, Cinp);
    return cudaGetLastError();
}
