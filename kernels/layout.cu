/* layout.cu - one thread per output element, so every write is coalesced; reads are gathers. */
#include "common.cuh"
#include "layout.cuh"

#define GRID_STRIDE(i, n)                                                                                    \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n);                                  \
         i += (size_t)gridDim.x * blockDim.x)

static const int THREADS = 256;

static __global__ void patchify_kernel(float *patches, const float *lat, int F, int C, int Hh, int Ww, int ph,
                                       int pw) {
    const int gh = Hh / ph, gw = Ww / pw, K = C * ph * pw;
    const size_t total = (size_t)F * gh * gw * K;
    GRID_STRIDE(o, total) {
        const size_t t = o / K;
        const int k = (int)(o % K);
        const int c = k / (ph * pw), di = (k / pw) % ph, dj = k % pw;
        const int f = (int)(t / ((size_t)gh * gw)), i = (int)((t / gw) % gh), j = (int)(t % gw);
        patches[o] = lat[(((size_t)f * C + c) * Hh + (size_t)(i * ph + di)) * Ww + (size_t)(j * pw + dj)];
    }
}

static __global__ void unpatchify_kernel(float *lat, const float *tokens, int F, int C, int Hh, int Ww,
                                         int ph, int pw) {
    const int gh = Hh / ph, gw = Ww / pw, K = C * ph * pw;
    const size_t total = (size_t)F * C * (size_t)(gh * ph) * (size_t)(gw * pw);
    const int H2 = gh * ph, W2 = gw * pw; /* the covered part of the latent (all of it when divisible) */
    GRID_STRIDE(o, total) {
        const int x = (int)(o % W2), y = (int)((o / W2) % H2);
        const size_t fc = o / ((size_t)W2 * H2);
        const int c = (int)(fc % C), f = (int)(fc / C);
        const int i = y / ph, di = y % ph, j = x / pw, dj = x % pw;
        const size_t t = ((size_t)f * gh + i) * gw + j;
        lat[(fc * Hh + (size_t)y) * Ww + (size_t)x] = tokens[t * K + (size_t)(di * pw + dj) * C + c];
    }
}

static __global__ void to_rgb8_kernel(uint8_t *rgb, const float *x, int H, int W) {
    const size_t HW = (size_t)H * W, total = HW * 3;
    GRID_STRIDE(o, total) {
        const int c = (int)(o % 3);
        const size_t pix = o / 3;
        float v = x[c * HW + pix];
        if (!(v > 0.0f)) v = 0.0f; /* also maps NaN to 0 */
        if (v > 1.0f) v = 1.0f;
        rgb[o] = (uint8_t)rintf(__fmul_rn(v, 255.0f)); /* rint: half to even, like nearbyintf */
    }
}

extern "C" cudaError_t wm_cuda_patchify(float *patches, const float *lat, int F, int C, int Hh, int Ww,
                                        int ph, int pw, cudaStream_t s) {
    const size_t total = (size_t)F * (Hh / ph) * (Ww / pw) * C * ph * pw;
    if (total)
        patchify_kernel<<<wm_grid_for(total, THREADS), THREADS, 0, s>>>(patches, lat, F, C, Hh, Ww, ph, pw);
    return cudaGetLastError();
}
extern "C" cudaError_t wm_cuda_unpatchify(float *lat, const float *tokens, int F, int C, int Hh, int Ww,
                                          int ph, int pw, cudaStream_t s) {
    const size_t total = (size_t)F * C * (Hh / ph * ph) * (Ww / pw * pw);
    if (total)
        unpatchify_kernel<<<wm_grid_for(total, THREADS), THREADS, 0, s>>>(lat, tokens, F, C, Hh, Ww, ph, pw);
    return cudaGetLastError();
}
extern "C" cudaError_t wm_cuda_to_rgb8(uint8_t *rgb, const float *x, int H, int W, cudaStream_t s) {
    const size_t total = (size_t)H * W * 3;
    if (total) to_rgb8_kernel<<<wm_grid_for(total, THREADS), THREADS, 0, s>>>(rgb, x, H, W);
    return cudaGetLastError();
}
