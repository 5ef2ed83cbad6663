/* attn_naive.cu - see attn_naive.cuh. Pass 1: each thread scores a strided subset of the keys, the
 * block takes the max. Pass 2: the keys go in tiles of blockDim; each thread scores one key of the
 * tile into shared memory, then thread d accumulates sum_j p_j v_j[d] over the tile (coalesced rows
 * of v). Scores are recomputed identically in both passes, so every p_j <= 1. */
#include "attn_naive.cuh"
#include "common.cuh"

#define NAIVE_THREADS 128
#define NAIVE_MAX_D   256

static __device__ __forceinline__ float score(const float *qs, const uint16_t *kr, int D, float scale,
                                              const float *bias, int j) {
    float s = 0.0f;
    for (int d = 0; d < D; d++) s += qs[d] * wm_bf16_to_f32(kr[d]);
    s *= scale;
    if (bias) s += bias[j];
    return s;
}

static __global__ void attn_naive_kernel(float *out, int64_t ldo, const float *q, int64_t ldq,
                                         const uint16_t *k, const uint16_t *v, int64_t ldkv, int Mk, int D,
                                         float scale, const float *key_bias, int64_t bias_head_stride) {
    __shared__ float qs[NAIVE_MAX_D];
    __shared__ float ps[NAIVE_THREADS];
    __shared__ float red[32];
    const int i = blockIdx.x, h = blockIdx.y, tid = threadIdx.x;
    for (int d = tid; d < D; d += blockDim.x) qs[d] = q[(size_t)i * ldq + (size_t)h * D + d];
    __syncthreads();
    const uint16_t *kh = k + (size_t)h * D, *vh = v + (size_t)h * D;
    const float *bias = key_bias ? key_bias + (size_t)h * bias_head_stride : NULL;

    float m = -INFINITY;
    for (int j = tid; j < Mk; j += blockDim.x)
        m = fmaxf(m, score(qs, kh + (size_t)j * ldkv, D, scale, bias, j));
    m = wm_block_max(m, red);

    float acc[NAIVE_MAX_D / NAIVE_THREADS] = {0.0f, 0.0f};
    float lsum = 0.0f;
    for (int j0 = 0; j0 < Mk; j0 += blockDim.x) {
        const int j = j0 + tid;
        float p = 0.0f;
        if (j < Mk) p = expf(score(qs, kh + (size_t)j * ldkv, D, scale, bias, j) - m);
        lsum += p;
        __syncthreads(); /* ps of the previous tile fully consumed */
        ps[tid] = p;
        __syncthreads();
        const int nt = Mk - j0 < (int)blockDim.x ? Mk - j0 : (int)blockDim.x;
        for (int a = 0; a < NAIVE_MAX_D / NAIVE_THREADS; a++) {
            const int d = tid + a * blockDim.x;
            if (d >= D) break;
            float s = 0.0f;
            for (int t = 0; t < nt; t++) s += ps[t] * wm_bf16_to_f32(vh[(size_t)(j0 + t) * ldkv + d]);
            acc[a] += s;
        }
    }
    const float inv = 1.0f / wm_block_sum(lsum, red);
    for (int a = 0; a < NAIVE_MAX_D / NAIVE_THREADS; a++) {
        const int d = tid + a * blockDim.x;
        if (d < D) out[(size_t)i * ldo + (size_t)h * D + d] = acc[a] * inv;
    }
}

extern "C" cudaError_t wm_cuda_attn_naive(float *out, int64_t ldo, const float *q, int64_t ldq,
                                          const uint16_t *k, const uint16_t *v, int64_t ldkv, int Mq, int Mk,
                                          int H, int D, float scale, const float *key_bias,
                                          int64_t bias_head_stride, cudaStream_t s) {
    if (Mq <= 0 || H <= 0) return cudaSuccess;
    if (D <= 0 || D > NAIVE_MAX_D || H > 65535 || Mk <= 0) return cudaErrorInvalidValue;
    attn_naive_kernel<<<dim3((unsigned)Mq, (unsigned)H), NAIVE_THREADS, 0, s>>>(
        out, ldo, q, ldq, k, v, ldkv, Mk, D, scale, key_bias, bias_head_stride);
    return cudaGetLastError();
}
