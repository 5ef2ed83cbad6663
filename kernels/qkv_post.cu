/* qkv_post.cu - one thread block of 256 threads per token. The normalised row is staged in shared
 * memory because RoPE pairs elements that different threads normalised. The per-thread strides and
 * the unfused products are those of norm.cu, ann.cu's match_normalize_kernel and rope.cu, so on the
 * same (bf16) input the values equal those kernels run in sequence. */
#include "common.cuh"
#include "qkv_post.cuh"

static const int THREADS = 256; /* = norm.cu's and match_normalize's: the same reduction order */

/* row[c] = x[c] / sqrt(mean(x^2) + eps) * w[c] (rmsnorm_kernel's arithmetic), x bf16 */
static __device__ void rms_to_shared(float *row, const uint16_t *xb, int C, float eps, const float *w, float *sh) {
    float s = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const float x = wm_bf16_to_f32(xb[c]);
        row[c] = x;
        s = __fadd_rn(s, __fmul_rn(x, x));
    }
    s = wm_block_sum(s, sh); /* also orders the row's writes before the reads below (same thread) */
    const float rs = 1.0f / sqrtf(s / (float)C + eps);
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const float v = __fmul_rn(row[c], rs);
        row[c] = w ? __fmul_rn(v, w[c]) : v;
    }
    __syncthreads();
}

/* dst = bf16 of the row with the pair (2p, 2p+1) of every head rotated by (cs[p], sn[p]) (rope_kernel's
 * arithmetic) */
static __device__ void rope_from_shared(uint16_t *dst, const float *row, int C, int D, const float *cs,
                                        const float *sn) {
    const int np = D / 2;
    for (int i = threadIdx.x; i < C / 2; i += blockDim.x) {
        const int h = i / np, p = i % np, o = h * D + 2 * p;
        const float a = row[o], b = row[o + 1];
        dst[o] = wm_f32_to_bf16(__fsub_rn(__fmul_rn(a, cs[p]), __fmul_rn(b, sn[p])));
        dst[o + 1] = wm_f32_to_bf16(__fadd_rn(__fmul_rn(a, sn[p]), __fmul_rn(b, cs[p])));
    }
}

static __global__ void qkv_post_kernel(uint16_t *q_out, uint16_t *k_store, uint16_t *v_store, uint16_t *match,
                                       const uint16_t *qkv, int H, int D, float eps, const float *norm_q,
                                       const float *norm_k, int64_t frame0, int gh, int gw) {
    extern __shared__ float smem[]; /* row [C], cos [D/2], sin [D/2] */
    __shared__ float sh[32];
    const int C = H * D, r = blockIdx.x;
    float *row = smem, *cs = smem + C, *sn = cs + D / 2;
    const uint16_t *src = qkv + (size_t)r * 3 * C;

    /* the token's angles, as rope_kernel computes them */
    const int np = D / 2, dt = D - 4 * (D / 6), dh = 2 * (D / 6), pt = dt / 2, ph = dh / 2;
    for (int p = threadIdx.x; p < np; p += blockDim.x) {
        const int axis = p < pt ? 0 : (p < pt + ph ? 1 : 2);
        const int j = axis == 0 ? p : (axis == 1 ? p - pt : p - pt - ph);
        const int adim = axis == 0 ? dt : dh;
        const int64_t pos = axis == 0 ? frame0 + r / (gh * gw) : (axis == 1 ? (r / gw) % gh : r % gw);
        const double ang = (double)pos * pow(10000.0, -(double)(2 * j) / (double)adim);
        cs[p] = (float)cos(ang);
        sn[p] = (float)sin(ang);
    }

    if (q_out) {
        rms_to_shared(row, src, C, eps, norm_q, sh); /* also orders the angle writes before their reads */
        rope_from_shared(q_out + (size_t)r * C, row, C, D, cs, sn);
    }
    __syncthreads();

    rms_to_shared(row, src + C, C, eps, norm_k, sh);
    if (match) { /* match_normalize_kernel's arithmetic */
        float ss = 0.f;
        for (int i = threadIdx.x; i < C; i += blockDim.x) ss = fmaf(row[i], row[i], ss);
        ss = wm_block_sum(ss, sh);
        const float inv = ss > 0.f ? 1.0f / sqrtf(ss) : 0.f;
        uint16_t *mr = match + (size_t)r * C;
        for (int i = threadIdx.x; i < C; i += blockDim.x) mr[i] = wm_f32_to_bf16(row[i] * inv);
    }
    rope_from_shared(k_store + (size_t)r * C, row, C, D, cs, sn);

    const uint16_t *v = src + 2 * C; /* already bf16: a copy */
    uint16_t *vr = v_store + (size_t)r * C;
    for (int i = threadIdx.x; i < C; i += blockDim.x) vr[i] = v[i];
}

extern "C" cudaError_t wm_cuda_qkv_post(uint16_t *q_out, uint16_t *k_store, uint16_t *v_store, uint16_t *match,
                                        const uint16_t *qkv, int M, int H, int D, float eps, const float *norm_q,
                                        const float *norm_k, int64_t frame0, int gh, int gw, cudaStream_t s) {
    if (M <= 0 || H <= 0 || D < 2) return cudaSuccess;
    const size_t smem = ((size_t)H * D + (size_t)D) * sizeof(float);
    if (smem > 48 * 1024) return cudaErrorInvalidValue; /* rows up to 12k wide; the Wan family has 1536..5120 */
    qkv_post_kernel<<<(unsigned)M, THREADS, smem, s>>>(q_out, k_store, v_store, match, qkv, H, D, eps, norm_q, norm_k,
                                                      frame0, gh, gw);
    return cudaGetLastError();
}
