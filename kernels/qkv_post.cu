/* qkv_post.cu - one thread block of 256 threads per token. The normalised row is staged in shared
 * memory because RoPE pairs elements that different threads normalised. The per-thread strides and
 * the unfused products are those of norm.cu, ann.cu's match_normalize_kernel and rope.cu, so on the
 * same (bf16) input the values equal those kernels run in sequence.
 *
 * The RoPE angles are float64 (pow, cos, sin, as rope.cu and the CPU compute them). A token's angles
 * depend on its frame, row and column only, so a first small kernel computes them once per call for
 * the chunk's frames, rows and columns (a few thousand values) instead of 64 per token: computed per
 * token, the float64 transcendentals kept 192 of each block's 256 threads waiting (H100: ~0.1 ms of
 * every self_attn_in). */
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

/* RoPE's three axes: the time axis takes dt of the D dims (pt = dt/2 pairs), height and width dh each
 * (ph pairs), as rope.cu splits them */
struct rope_axes {
    int np, dt, dh, pt, ph;
};
static __host__ __device__ rope_axes axes_of(int D) {
    rope_axes a;
    a.np = D / 2, a.dt = D - 4 * (D / 6), a.dh = 2 * (D / 6), a.pt = a.dt / 2, a.ph = a.dh / 2;
    return a;
}

/* table = cos then sin, each [F * pt (frames) + gh * ph (rows) + gw * ph (columns)] */
static __global__ void angle_table_kernel(float *table, int n, int64_t frame0, int F, int gh, int gw, int D) {
    const rope_axes a = axes_of(D);
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    int64_t pos;
    int j, adim;
    if (i < F * a.pt) pos = frame0 + i / a.pt, j = i % a.pt, adim = a.dt;
    else if (i < F * a.pt + gh * a.ph) pos = (i - F * a.pt) / a.ph, j = (i - F * a.pt) % a.ph, adim = a.dh;
    else pos = (i - F * a.pt - gh * a.ph) / a.ph, j = (i - F * a.pt - gh * a.ph) % a.ph, adim = a.dh;
    const double ang = (double)pos * pow(10000.0, -(double)(2 * j) / (double)adim);
    table[i] = (float)cos(ang);
    table[n + i] = (float)sin(ang);
}

static __global__ void qkv_post_kernel(uint16_t *q_out, uint16_t *k_store, uint16_t *v_store, uint16_t *match,
                                       const uint16_t *qkv, int H, int D, float eps, const float *norm_q,
                                       const float *norm_k, const float *table, int n, int F, int gh, int gw) {
    extern __shared__ float smem[]; /* row [C], cos [D/2], sin [D/2] */
    __shared__ float sh[32];
    const int C = H * D, r = blockIdx.x;
    float *row = smem, *cs = smem + C, *sn = cs + D / 2;
    const uint16_t *src = qkv + (size_t)r * 3 * C;

    /* the token's angles from the table of its frame, row and column */
    const rope_axes a = axes_of(D);
    for (int p = threadIdx.x; p < a.np; p += blockDim.x) {
        const int t = p < a.pt        ? (r / (gh * gw)) * a.pt + p
                      : p < a.pt + a.ph ? F * a.pt + ((r / gw) % gh) * a.ph + (p - a.pt)
                                        : F * a.pt + gh * a.ph + (r % gw) * a.ph + (p - a.pt - a.ph);
        cs[p] = table[t];
        sn[p] = table[n + t];
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

static int frames_of(int M, int gh, int gw) { return (M + gh * gw - 1) / (gh * gw); }

extern "C" size_t wm_cuda_qkv_post_table_floats(int M, int D, int gh, int gw) {
    const rope_axes a = axes_of(D);
    return 2 * (size_t)(frames_of(M, gh, gw) * a.pt + gh * a.ph + gw * a.ph);
}

extern "C" cudaError_t wm_cuda_qkv_post(uint16_t *q_out, uint16_t *k_store, uint16_t *v_store, uint16_t *match,
                                        const uint16_t *qkv, int M, int H, int D, float eps, const float *norm_q,
                                        const float *norm_k, int64_t frame0, int gh, int gw, float *table,
                                        cudaStream_t s) {
    if (M <= 0 || H <= 0 || D < 2) return cudaSuccess;
    if (gh <= 0 || gw <= 0 || !table) return cudaErrorInvalidValue;
    const size_t smem = ((size_t)H * D + (size_t)D) * sizeof(float);
    if (smem > 48 * 1024) return cudaErrorInvalidValue; /* rows up to 12k wide; the Wan family has 1536..5120 */
    const int F = frames_of(M, gh, gw), n = (int)(wm_cuda_qkv_post_table_floats(M, D, gh, gw) / 2);
    angle_table_kernel<<<(unsigned)((n + 127) / 128), 128, 0, s>>>(table, n, frame0, F, gh, gw, D);
    qkv_post_kernel<<<(unsigned)M, THREADS, smem, s>>>(q_out, k_store, v_store, match, qkv, H, D, eps, norm_q, norm_k,
                                                      table, n, F, gh, gw);
    return cudaGetLastError();
}
