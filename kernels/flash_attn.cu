/* flash_attn.cu - our flash-attention forward (see flash_attn.cuh for the contract).
 *
 * Two kernels compute the same function:
 *  - fa_wgmma_kernel (Hopper, sm_90a): FlashAttention-3 style. 3 warpgroups per CTA of 128 query
 *    rows: warpgroup 0 is the producer (one warp issues TMA loads of the Q tile and of 128-key K/V
 *    tiles into a 3-stage ring of 128B-swizzled shared memory, with mbarrier full/empty handshakes,
 *    and stages the per-key bias), warpgroups 1-2 are consumers of 64 rows each: S = Q K^T by
 *    wgmma.m64n128k16 (both operands in shared memory), online softmax in registers (exp2 with the
 *    scale folded into log2 e), O += P V by wgmma with P from registers (RS form) and V read
 *    MN-major (transposed) from shared memory. The QK^T of tile j is issued together with the PV of
 *    tile j-1 so the softmax of tile j overlaps the tensor cores (intra-warpgroup overlap), and the
 *    two consumer warpgroups take turns at the tensor cores through named barriers (ping-pong).
 *    One CTA per (query block, head) and SM; when the last wave would be partly empty, its units
 *    run as two 64-row CTAs each whose consumer warpgroups split the keys (even/odd tiles) and merge
 *    (m, l, O) through shared memory at the end (444 units on 132 SMs: 4 waves -> 3.5).
 *  - fa_mma_kernel (portable, sm_80+): FlashAttention-2 style. 8 warps x 16 query rows, Q fragments
 *    in registers, K/V tiles double-buffered through shared memory with cp.async, ldmatrix(.trans)
 *    into mma.sync.m16n8k16 bf16 with fp32 accumulation.
 * Both use tiles of WM_FA_BLOCK_Q x WM_FA_BLOCK_K (128 x 128) and the same online-softmax code.
 * Measurements and design notes: docs/bench/attention.md. */
#include "flash_attn.cuh"

#include <cuda.h> /* CUtensorMap and its enums (types only; the encoder comes via the runtime) */
#include <cuda_runtime.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define WM_FA_SM90A 1
#endif

#define FA_BQ WM_FA_BLOCK_Q
#define FA_BK WM_FA_BLOCK_K
static_assert(FA_BQ == 128 && FA_BK == 128, "the kernels are written for 128 x 128 tiles");

#define FA_LOG2E 1.4426950408889634f

struct FaParams {
    const uint16_t *q, *k, *v;
    int64_t ldq, ldkv;
    float *out;
    uint16_t *out16; /* bf16 output instead of out */
    int64_t ldo;
    int Mq, Mk, H;
    float scale_log2; /* scale * log2(e) */
    const float *bias;
    int64_t bias_stride;
    const int *kb_off, *kb_idx;
    int n_qblocks, n_kblocks;
    int pingpong; /* Hopper kernel: the two consumer warpgroups take turns at the tensor cores */
    int n_full;   /* Hopper kernel: CTAs [0, n_full) take one (query block, head) unit each; the
                   * units after them run as two CTAs of 64 rows each ("split" CTAs, whose two
                   * consumer warpgroups share the keys), to even out the last wave */
};

/* ------------------------------------------------------------------------------------------- */
/* small device helpers                                                                          */
/* ------------------------------------------------------------------------------------------- */
__device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}
__device__ __forceinline__ float fa_ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}
/* number of valid keys of key block kb (0 for an index outside the key range) */
__device__ __forceinline__ int fa_block_keys(const FaParams &p, int kb) {
    if (kb < 0 || kb >= p.n_kblocks) return 0;
    int n = p.Mk - kb * FA_BK;
    return n < FA_BK ? n : FA_BK;
}

/* Online softmax over one tile of NB n8-blocks (NB*8 keys) for the two rows a thread holds.
 * s[4j+e]: e=0,1 -> row r0, keys 8j+2t+e; e=2,3 -> row r1 (the mma.sync C and wgmma D layouts).
 * On return s holds p = exp2(x - m) (fp32), m/l are updated and alpha is the factor the running
 * output must be multiplied by. BIAS: bv[2j+e] (the bias of key 8j+2t+e, already * log2e, -inf for
 * keys to drop) is added to the scaled logit; else keys >= nvalid are masked. */
template <int NB, bool BIAS>
__device__ __forceinline__ void fa_softmax_tile(float *s, float &m0, float &m1, float &l0, float &l1,
                                                float &alpha0, float &alpha1, const float *bv,
                                                int nvalid, float scale_log2, int t) {
    const float cc = BIAS ? 1.f : scale_log2;
    if (BIAS) {
#pragma unroll
        for (int j = 0; j < NB; j++) {
            s[4 * j + 0] = fmaf(s[4 * j + 0], scale_log2, bv[2 * j]);
            s[4 * j + 1] = fmaf(s[4 * j + 1], scale_log2, bv[2 * j + 1]);
            s[4 * j + 2] = fmaf(s[4 * j + 2], scale_log2, bv[2 * j]);
            s[4 * j + 3] = fmaf(s[4 * j + 3], scale_log2, bv[2 * j + 1]);
        }
    } else if (nvalid < NB * 8) {
#pragma unroll
        for (int j = 0; j < NB; j++) {
            const int c = 8 * j + 2 * t;
            if (c >= nvalid) s[4 * j + 0] = s[4 * j + 2] = -INFINITY;
            if (c + 1 >= nvalid) s[4 * j + 1] = s[4 * j + 3] = -INFINITY;
        }
    }
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int j = 0; j < NB; j++) {
        mx0 = fmaxf(mx0, fmaxf(s[4 * j + 0], s[4 * j + 1]));
        mx1 = fmaxf(mx1, fmaxf(s[4 * j + 2], s[4 * j + 3]));
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    const float mn0 = fmaxf(m0, mx0 * cc), mn1 = fmaxf(m1, mx1 * cc);
    /* a row that has seen only -inf keeps m = -inf; subtract 0 then so exp2 gives 0, not NaN */
    const float mu0 = mn0 == -INFINITY ? 0.f : mn0, mu1 = mn1 == -INFINITY ? 0.f : mn1;
    alpha0 = fa_ex2(m0 - mu0);
    alpha1 = fa_ex2(m1 - mu1);
    m0 = mn0;
    m1 = mn1;
    float sum0 = 0.f, sum1 = 0.f;
#pragma unroll
    for (int j = 0; j < NB; j++) {
        s[4 * j + 0] = fa_ex2(fmaf(s[4 * j + 0], cc, -mu0));
        s[4 * j + 1] = fa_ex2(fmaf(s[4 * j + 1], cc, -mu0));
        s[4 * j + 2] = fa_ex2(fmaf(s[4 * j + 2], cc, -mu1));
        s[4 * j + 3] = fa_ex2(fmaf(s[4 * j + 3], cc, -mu1));
        sum0 += s[4 * j + 0] + s[4 * j + 1];
        sum1 += s[4 * j + 2] + s[4 * j + 3];
    }
    l0 = l0 * alpha0 + sum0;
    l1 = l1 * alpha1 + sum1;
}

/* Final normalisation and store of a thread's two rows (o in the C/D fragment layout, NO n8
 * blocks of output columns). */
template <int NO>
__device__ __forceinline__ void fa_store_rows(const FaParams &p, const float *o, float l0, float l1,
                                              int r0, int h, int D, int t) {
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float i0 = l0 > 0.f ? 1.f / l0 : 0.f, i1 = l1 > 0.f ? 1.f / l1 : 0.f;
    const int r1 = r0 + 8;
    if (p.out16) { /* bf16 pairs, each rounded to nearest even */
        if (r0 < p.Mq) {
            uint16_t *dst = p.out16 + (int64_t)r0 * p.ldo + (int64_t)h * D + 2 * t;
#pragma unroll
            for (int j = 0; j < NO; j++)
                *reinterpret_cast<uint32_t *>(dst + 8 * j) = pack_bf16(o[4 * j + 0] * i0, o[4 * j + 1] * i0);
        }
        if (r1 < p.Mq) {
            uint16_t *dst = p.out16 + (int64_t)r1 * p.ldo + (int64_t)h * D + 2 * t;
#pragma unroll
            for (int j = 0; j < NO; j++)
                *reinterpret_cast<uint32_t *>(dst + 8 * j) = pack_bf16(o[4 * j + 2] * i1, o[4 * j + 3] * i1);
        }
        return;
    }
    if (r0 < p.Mq) {
        float *dst = p.out + (int64_t)r0 * p.ldo + (int64_t)h * D + 2 * t;
#pragma unroll
        for (int j = 0; j < NO; j++)
            *reinterpret_cast<float2 *>(dst + 8 * j) = make_float2(o[4 * j + 0] * i0, o[4 * j + 1] * i0);
    }
    if (r1 < p.Mq) {
        float *dst = p.out + (int64_t)r1 * p.ldo + (int64_t)h * D + 2 * t;
#pragma unroll
        for (int j = 0; j < NO; j++)
            *reinterpret_cast<float2 *>(dst + 8 * j) = make_float2(o[4 * j + 2] * i1, o[4 * j + 3] * i1);
    }
}

/* ------------------------------------------------------------------------------------------- */
/* portable kernel: mma.sync m16n8k16, cp.async double buffering, ldmatrix                       */
/* ------------------------------------------------------------------------------------------- */
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, bool pred) {
    const int n = pred ? 16 : 0; /* 0 source bytes: the 16 destination bytes are zero-filled */
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t addr, uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}
__device__ __forceinline__ void mma_bf16(float *c, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Shared-memory rows of D bf16; 16-byte chunk c of row r lives at chunk c ^ (r & 7), so the 8 row
 * addresses of an ldmatrix hit 8 different bank groups. */
template <int D>
__device__ __forceinline__ uint32_t swz(int r, int c) {
    return (uint32_t)(r * D * 2 + ((c ^ (r & 7)) << 4));
}

template <int D>
static constexpr int fa_mma_smem_bytes() {
    return FA_BQ * D * 2 + 2 * 2 * FA_BK * D * 2 + 2 * FA_BK * 4;
}

template <int D, bool BIAS>
static __global__ void __launch_bounds__(256, 1) fa_mma_kernel(const FaParams p) {
    constexpr int CH = D / 8; /* 16-byte chunks per row */
    extern __shared__ __align__(128) uint8_t fa_smem[];
    uint8_t *sQ = fa_smem;
    uint8_t *sK = sQ + FA_BQ * D * 2;
    uint8_t *sV = sK + 2 * FA_BK * D * 2;
    float *sB = reinterpret_cast<float *>(sV + 2 * FA_BK * D * 2);

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, t = lane & 3;
    const int qb = blockIdx.x, h = blockIdx.y;
    const int q0 = qb * FA_BQ;

    const int *list = nullptr;
    int n = p.n_kblocks;
    if (p.kb_off) {
        const int b = p.kb_off[(int64_t)h * p.n_qblocks + qb], e = p.kb_off[(int64_t)h * p.n_qblocks + qb + 1];
        list = p.kb_idx + b;
        n = e - b;
    }

    const uint32_t aQ = smem_u32(sQ), aK = smem_u32(sK), aV = smem_u32(sV);
    for (int c = tid; c < FA_BQ * CH; c += 256) {
        const int r = c / CH, ch = c % CH;
        const bool ok = q0 + r < p.Mq;
        cp_async16(aQ + swz<D>(r, ch), p.q + (int64_t)(ok ? q0 + r : 0) * p.ldq + (int64_t)h * D + ch * 8, ok);
    }
    auto load_kv = [&](int stage, int kb) {
        const int nv = fa_block_keys(p, kb), kbase = kb * FA_BK;
        const uint32_t dk = aK + stage * FA_BK * D * 2, dv = aV + stage * FA_BK * D * 2;
        for (int c = tid; c < FA_BK * CH; c += 256) {
            const int r = c / CH, ch = c % CH;
            const bool ok = r < nv;
            const int64_t off = (int64_t)(ok ? kbase + r : 0) * p.ldkv + (int64_t)h * D + ch * 8;
            cp_async16(dk + swz<D>(r, ch), p.k + off, ok);
            cp_async16(dv + swz<D>(r, ch), p.v + off, ok);
        }
        if (BIAS) {
            for (int j = tid; j < FA_BK; j += 256)
                sB[stage * FA_BK + j] = j < nv ? p.bias[(int64_t)h * p.bias_stride + kbase + j] * FA_LOG2E : -INFINITY;
        }
    };
    if (n > 0) load_kv(0, list ? list[0] : 0);
    cp_async_commit();

    float o[D / 2];
#pragma unroll
    for (int i = 0; i < D / 2; i++) o[i] = 0.f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
    uint32_t qf[D / 16][4];

    for (int it = 0; it < n; it++) {
        if (it + 1 < n) load_kv((it + 1) & 1, list ? list[it + 1] : it + 1);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        if (it == 0) {
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                const int r = warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, ch = 2 * kk + (lane >> 4);
                ldsm_x4(aQ + swz<D>(r, ch), qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3]);
            }
        }
        const int st = it & 1;
        const int kb = list ? list[it] : it;
        const int nv = fa_block_keys(p, kb);
        const uint32_t bK = aK + st * FA_BK * D * 2, bV = aV + st * FA_BK * D * 2;

        float s[FA_BK / 2];
#pragma unroll
        for (int i = 0; i < FA_BK / 2; i++) s[i] = 0.f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
#pragma unroll
            for (int np = 0; np < FA_BK / 16; np++) {
                uint32_t b0, b1, b2, b3;
                const int r = np * 16 + (lane & 7) + (lane >> 4) * 8, ch = 2 * kk + ((lane >> 3) & 1);
                ldsm_x4(bK + swz<D>(r, ch), b0, b1, b2, b3);
                mma_bf16(&s[8 * np], qf[kk], b0, b1);
                mma_bf16(&s[8 * np + 4], qf[kk], b2, b3);
            }
        }
        float a0, a1;
        float bv[BIAS ? FA_BK / 4 : 1];
        if (BIAS) {
#pragma unroll
            for (int j = 0; j < FA_BK / 8; j++) {
                const float2 b = *reinterpret_cast<const float2 *>(sB + st * FA_BK + 8 * j + 2 * t);
                bv[2 * j] = b.x;
                bv[2 * j + 1] = b.y;
            }
        }
        fa_softmax_tile<FA_BK / 8, BIAS>(s, m0, m1, l0, l1, a0, a1, bv, nv, p.scale_log2, t);
#pragma unroll
        for (int j = 0; j < D / 8; j++) {
            o[4 * j + 0] *= a0;
            o[4 * j + 1] *= a0;
            o[4 * j + 2] *= a1;
            o[4 * j + 3] *= a1;
        }
#pragma unroll
        for (int kk = 0; kk < FA_BK / 16; kk++) {
            uint32_t a[4];
            a[0] = pack_bf16(s[8 * kk + 0], s[8 * kk + 1]);
            a[1] = pack_bf16(s[8 * kk + 2], s[8 * kk + 3]);
            a[2] = pack_bf16(s[8 * kk + 4], s[8 * kk + 5]);
            a[3] = pack_bf16(s[8 * kk + 6], s[8 * kk + 7]);
#pragma unroll
            for (int dp = 0; dp < D / 16; dp++) {
                uint32_t b0, b1, b2, b3;
                const int r = kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, ch = 2 * dp + (lane >> 4);
                ldsm_x4_t(bV + swz<D>(r, ch), b0, b1, b2, b3);
                mma_bf16(&o[8 * dp], a, b0, b1);
                mma_bf16(&o[8 * dp + 4], a, b2, b3);
            }
        }
        __syncthreads();
    }
    cp_async_wait<0>();
    fa_store_rows<D / 8>(p, o, l0, l1, q0 + warp * 16 + (lane >> 2), h, D, t);
}

/* ------------------------------------------------------------------------------------------- */
/* Hopper kernel: TMA + mbarrier producer, wgmma consumers                                       */
/* ------------------------------------------------------------------------------------------- */
#define FA_WG_THREADS 384

template <int D, int ST>
static constexpr int fa_wg_smem_bytes() {
    /* Q tile, ST x (K tile + V tile), ST x bias row, + 1024 for the manual alignment */
    return FA_BQ * D * 2 + ST * 2 * FA_BK * D * 2 + ST * FA_BK * 4 + 1024;
}

#if defined(WM_FA_SM90A)
__device__ __forceinline__ void mbar_init(uint64_t *bar, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint64_t *bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(bytes)
                 : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t *bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_u32(bar)) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t *bar, uint32_t parity) {
    const uint32_t a = smem_u32(bar);
    uint32_t done;
    do {
        asm volatile(
            "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(a), "r"(parity)
            : "memory");
    } while (!done);
}
__device__ __forceinline__ void tma_load_2d(void *dst, const CUtensorMap *map, int c0, int c1, uint64_t *bar) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
            smem_u32(dst)),
        "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(smem_u32(bar))
        : "memory");
}
__device__ __forceinline__ void tma_prefetch_desc(const CUtensorMap *map) {
    asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}
__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wg_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
/* keeps the compiler from moving accesses of wgmma accumulators across fences and waits */
template <int N>
__device__ __forceinline__ void reg_fence(float *r) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+f"(r[i])::"memory");
}
template <int N>
__device__ __forceinline__ void reg_fence_u(uint32_t *r) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+r"(r[i])::"memory");
}
/* shared-memory matrix descriptor, 128-byte swizzle */
__device__ __forceinline__ uint64_t gdesc(uint32_t saddr, uint32_t lbo, uint32_t sbo) {
    return (uint64_t)((saddr & 0x3FFFFu) >> 4) | ((uint64_t)(lbo >> 4) << 16) | ((uint64_t)(sbo >> 4) << 32) |
           (1ull << 62);
}
__device__ __forceinline__ void named_sync(int id) { asm volatile("bar.sync %0, 256;\n" ::"r"(id) : "memory"); }
__device__ __forceinline__ void named_arrive(int id) { asm volatile("bar.arrive %0, 256;\n" ::"r"(id) : "memory"); }

__device__ __forceinline__ void wgmma_m64n128k16_ss(float *d, uint64_t da, uint64_t db, int acc) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
        "%64, %65, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(da), "l"(db), "r"(acc));
}

__device__ __forceinline__ void wgmma_m64n128k16_rs(float *d, const uint32_t *a, uint64_t db) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
        "{%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}

__device__ __forceinline__ void wgmma_m64n64k16_rs(float *d, const uint32_t *a, uint64_t db) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
        "{%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}

#endif /* WM_FA_SM90A */

#if defined(WM_FA_SM90A)
/* S(64 x 128 keys) = Q(64 x D) K^T for one consumer warpgroup; both operands K-major in smem */
template <int D>
__device__ __forceinline__ void wg_qk(float *s, uint32_t aQ, uint32_t aK) {
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        const uint32_t off = (uint32_t)(kk >> 2) * (FA_BK * 128) + (uint32_t)(kk & 3) * 32;
        wgmma_m64n128k16_ss(s, gdesc(aQ + off, 16, 1024), gdesc(aK + off, 16, 1024), kk > 0);
    }
}
/* O(64 x D) += P(64 x 128 keys, registers) V(128 x D, MN-major in smem) */
template <int D>
__device__ __forceinline__ void wg_pv(float *o, const uint32_t *pf, uint32_t aV) {
#pragma unroll
    for (int kk = 0; kk < FA_BK / 16; kk++) {
        const uint64_t dv = gdesc(aV + (uint32_t)kk * 16 * 128, FA_BK * 128, 1024);
        if constexpr (D == 128)
            wgmma_m64n128k16_rs(o, pf + 4 * kk, dv);
        else
            wgmma_m64n64k16_rs(o, pf + 4 * kk, dv);
    }
}
/* the staged bias (times log2 e, -inf past the valid keys) of this thread's 32 keys, from shared
 * memory into registers; issued while the QK^T product runs. (Reading it straight from global
 * memory here instead ran at 40% of the speed: 224 vs 545 TFLOP/s, H100, q=4680 k=32760.) */
template <bool BIAS>
__device__ __forceinline__ void fa_load_bias(const float *sb, int t, float *bv) {
    if constexpr (BIAS) {
#pragma unroll
        for (int j = 0; j < FA_BK / 8; j++) {
            const float2 b = *reinterpret_cast<const float2 *>(sb + 8 * j + 2 * t);
            bv[2 * j] = b.x;
            bv[2 * j + 1] = b.y;
        }
    }
}
__device__ __forceinline__ void fa_pack_p(const float *s, uint32_t *pf) {
#pragma unroll
    for (int kk = 0; kk < FA_BK / 16; kk++) {
        pf[4 * kk + 0] = pack_bf16(s[8 * kk + 0], s[8 * kk + 1]);
        pf[4 * kk + 1] = pack_bf16(s[8 * kk + 2], s[8 * kk + 3]);
        pf[4 * kk + 2] = pack_bf16(s[8 * kk + 4], s[8 * kk + 5]);
        pf[4 * kk + 3] = pack_bf16(s[8 * kk + 6], s[8 * kk + 7]);
    }
}
#endif

template <int D, bool BIAS, int ST>
static __global__ void __launch_bounds__(FA_WG_THREADS, 1)
    fa_wgmma_kernel(const __grid_constant__ CUtensorMap tmQ, const __grid_constant__ CUtensorMap tmK,
                    const __grid_constant__ CUtensorMap tmV, const FaParams p) {
#if defined(WM_FA_SM90A)
    constexpr int NP = D / 64;
    constexpr int TQ = FA_BQ * D * 2, TK = FA_BK * D * 2;
    /* static shared memory exists only in the sm_90a build: the host checks for it */
    __shared__ __align__(8) uint64_t bars[1 + 4 * ST];
    extern __shared__ __align__(128) uint8_t fa_smem[];
    const uint32_t sbase = smem_u32(fa_smem);
    uint8_t *sQ = fa_smem + (((sbase + 1023u) & ~1023u) - sbase); /* 128B swizzle wants 1024B alignment */
    uint8_t *sK = sQ + TQ;
    uint8_t *sV = sK + ST * TK;
    float *sB = reinterpret_cast<float *>(sV + ST * TK);
    uint64_t *q_full = bars, *k_full = bars + 1, *v_full = bars + 1 + ST, *k_empty = bars + 1 + 2 * ST,
             *v_empty = bars + 1 + 3 * ST;

    const int tid = threadIdx.x, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31;
    /* work unit: a (query block, head); a split CTA does 64 rows of one, keys shared by its two
     * consumer warpgroups (even / odd key tiles) and merged at the end */
    int unit, half = -1;
    if ((int)blockIdx.x < p.n_full) {
        unit = blockIdx.x;
    } else {
        const int i = blockIdx.x - p.n_full;
        unit = p.n_full + (i >> 1);
        half = i & 1;
    }
    const bool split = half >= 0;
    const int qb = unit % p.n_qblocks, h = unit / p.n_qblocks;
    const int *list = nullptr;
    int n = p.n_kblocks;
    if (p.kb_off) {
        const int b = p.kb_off[(int64_t)h * p.n_qblocks + qb], e = p.kb_off[(int64_t)h * p.n_qblocks + qb + 1];
        list = p.kb_idx + b;
        n = e - b;
    }

    if (tid == 0) {
        mbar_init(q_full, 1);
#pragma unroll
        for (int s = 0; s < ST; s++) {
            mbar_init(&k_full[s], BIAS ? 33 : 1); /* TMA expect_tx (+ the 32 lanes that stage the bias) */
            mbar_init(&v_full[s], 1);
            mbar_init(&k_empty[s], split ? 4 : 8); /* one arrival per consuming warp */
            mbar_init(&v_empty[s], split ? 4 : 8);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    if (wg == 0) {
        /* ---------------- producer ---------------- */
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
        if (warp == 0) {
            if (lane == 0) {
                tma_prefetch_desc(&tmQ);
                tma_prefetch_desc(&tmK);
                tma_prefetch_desc(&tmV);
                mbar_expect_tx(q_full, TQ);
#pragma unroll
                for (int pn = 0; pn < NP; pn++)
                    tma_load_2d(sQ + pn * FA_BQ * 128, &tmQ, h * D + pn * 64, qb * FA_BQ, q_full);
            }
            for (int it = 0; it < n; it++) {
                const int s = it % ST;
                const uint32_t ph = (uint32_t)(it / ST) & 1u;
                const int kb = list ? list[it] : it;
                const int nv = fa_block_keys(p, kb);
                const int krow = nv > 0 ? kb * FA_BK : 0; /* an ignored block loads block 0, fully masked */
                if (it >= ST) mbar_wait(&k_empty[s], ph ^ 1u);
                if (lane == 0) {
                    mbar_expect_tx(&k_full[s], TK);
#pragma unroll
                    for (int pn = 0; pn < NP; pn++)
                        tma_load_2d(sK + s * TK + pn * FA_BK * 128, &tmK, h * D + pn * 64, krow, &k_full[s]);
                }
                if (BIAS) {
                    /* stage the tile's bias (times log2 e, -inf for keys to drop); each lane's own
                     * arrive releases its stores. (compute-sanitizer racecheck reports the consumers'
                     * reads of the previous round vs these stores as a hazard: it does not credit the
                     * __syncwarp before the consumer warp's single k_empty arrival, which orders them.) */
                    const float *brow = p.bias + (int64_t)h * p.bias_stride + (int64_t)krow;
                    for (int j = lane; j < FA_BK; j += 32)
                        sB[s * FA_BK + j] = j < nv ? __ldg(brow + j) * FA_LOG2E : -INFINITY;
                    mbar_arrive(&k_full[s]);
                }
                if (it >= ST) mbar_wait(&v_empty[s], ph ^ 1u);
                if (lane == 0) {
                    mbar_expect_tx(&v_full[s], TK);
#pragma unroll
                    for (int pn = 0; pn < NP; pn++)
                        tma_load_2d(sV + s * TK + pn * FA_BK * 128, &tmV, h * D + pn * 64, krow, &v_full[s]);
                }
            }
        }
    } else {
        /* ---------------- consumers: 64 query rows each ---------------- */
        asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");
        const int cw = wg - 1, t = lane & 3;
        const int rsel = split ? half : cw; /* which 64-row slice of the query tile */
        const int r0 = qb * FA_BQ + rsel * 64 + warp * 16 + (lane >> 2);
        const uint32_t aQ = smem_u32(sQ) + rsel * 64 * 128, aK0 = smem_u32(sK), aV0 = smem_u32(sV);
        const bool pp = p.pingpong != 0 && !split;
        const int my_bar = 1 + cw, other_bar = 2 - cw;
        const int first = split ? cw : 0, step = split ? 2 : 1; /* this warpgroup's key tiles */

        float o[D / 2];
#pragma unroll
        for (int i = 0; i < D / 2; i++) o[i] = 0.f;
        float s[FA_BK / 2];
        uint32_t pprev[FA_BK / 4];
        float bv[BIAS ? FA_BK / 4 : 1];
        float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f, a0, a1;

        mbar_wait(q_full, 0);
        if (first < n) {
            if (pp && cw == 1) named_arrive(1); /* warpgroup 0 takes the first turn */
            /* first tile: S only */
            int prev = first;
            {
                const int sc = first % ST;
                const uint32_t ph = (uint32_t)(first / ST) & 1u;
                const int kb = list ? list[first] : first;
                const int nv = fa_block_keys(p, kb);
                mbar_wait(&k_full[sc], ph);
                if (pp) named_sync(my_bar);
                reg_fence<FA_BK / 2>(s);
                wg_fence();
                wg_qk<D>(s, aQ, aK0 + sc * TK);
                wg_commit();
                if (pp) named_arrive(other_bar);
                fa_load_bias<BIAS>(sB + sc * FA_BK, t, bv);
                wg_wait<0>();
                reg_fence<FA_BK / 2>(s);
                fa_softmax_tile<FA_BK / 8, BIAS>(s, m0, m1, l0, l1, a0, a1, bv, nv, p.scale_log2, t);
                __syncwarp();
                if (lane == 0) mbar_arrive(&k_empty[sc]);
                fa_pack_p(s, pprev);
            }
            /* tile it: S_it = Q K_it^T issued with O += P_prev V_prev; the softmax of tile it
             * runs while the PV product is on the tensor cores */
            for (int it = first + step; it < n; it += step) {
                const int sc = it % ST, sp = prev % ST;
                const uint32_t ph = (uint32_t)(it / ST) & 1u, php = (uint32_t)(prev / ST) & 1u;
                const int kb = list ? list[it] : it;
                const int nv = fa_block_keys(p, kb);
                mbar_wait(&k_full[sc], ph);
                mbar_wait(&v_full[sp], php);
                if (pp) named_sync(my_bar);
                reg_fence<FA_BK / 2>(s);
                reg_fence<D / 2>(o);
                reg_fence_u<FA_BK / 4>(pprev);
                wg_fence();
                wg_qk<D>(s, aQ, aK0 + sc * TK);
                wg_commit();
                wg_pv<D>(o, pprev, aV0 + sp * TK);
                wg_commit();
                if (pp) named_arrive(other_bar);
                fa_load_bias<BIAS>(sB + sc * FA_BK, t, bv);
                wg_wait<1>();
                reg_fence<FA_BK / 2>(s);
                fa_softmax_tile<FA_BK / 8, BIAS>(s, m0, m1, l0, l1, a0, a1, bv, nv, p.scale_log2, t);
                __syncwarp();
                if (lane == 0) mbar_arrive(&k_empty[sc]);
                wg_wait<0>();
                reg_fence<D / 2>(o);
                reg_fence_u<FA_BK / 4>(pprev);
                __syncwarp();
                if (lane == 0) mbar_arrive(&v_empty[sp]);
#pragma unroll
                for (int j = 0; j < D / 8; j++) {
                    o[4 * j + 0] *= a0;
                    o[4 * j + 1] *= a0;
                    o[4 * j + 2] *= a1;
                    o[4 * j + 3] *= a1;
                }
                /* P is packed only now: writing it while the PV product still reads the previous P
                 * makes ptxas serialise the wgmmas (C7513) */
                fa_pack_p(s, pprev);
                prev = it;
            }
            /* PV of the last tile */
            {
                const int sp = prev % ST;
                const uint32_t php = (uint32_t)(prev / ST) & 1u;
                mbar_wait(&v_full[sp], php);
                if (pp) named_sync(my_bar);
                reg_fence<D / 2>(o);
                reg_fence_u<FA_BK / 4>(pprev);
                wg_fence();
                wg_pv<D>(o, pprev, aV0 + sp * TK);
                wg_commit();
                if (pp && cw == 0) named_arrive(other_bar); /* warpgroup 1's last turn follows */
                wg_wait<0>();
                reg_fence<D / 2>(o);
                reg_fence_u<FA_BK / 4>(pprev);
            }
        }
        if (split) {
            /* merge the two warpgroups' partial (m, l, O) of the same rows through shared memory
             * (the K ring is idle once both are done: every load issued has been consumed) */
            float4 *ex = reinterpret_cast<float4 *>(sK);
            const int lt = tid & 127;
            named_sync(3);
            if (cw == 1) {
                asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#pragma unroll
                for (int c = 0; c < D / 8; c++) ex[c * 128 + lt] = make_float4(o[4 * c], o[4 * c + 1], o[4 * c + 2], o[4 * c + 3]);
                ex[(D / 8) * 128 + lt] = make_float4(m0, m1, l0, l1);
                named_arrive(4);
            } else {
                named_sync(4);
                const float4 mb = ex[(D / 8) * 128 + lt];
                const float n0 = fmaxf(m0, mb.x), n1 = fmaxf(m1, mb.y);
                const float u0 = n0 == -INFINITY ? 0.f : n0, u1 = n1 == -INFINITY ? 0.f : n1;
                const float fa0 = fa_ex2(m0 - u0), fb0 = fa_ex2(mb.x - u0);
                const float fa1 = fa_ex2(m1 - u1), fb1 = fa_ex2(mb.y - u1);
                l0 = l0 * fa0 + mb.z * fb0;
                l1 = l1 * fa1 + mb.w * fb1;
#pragma unroll
                for (int c = 0; c < D / 8; c++) {
                    const float4 x = ex[c * 128 + lt];
                    o[4 * c + 0] = o[4 * c + 0] * fa0 + x.x * fb0;
                    o[4 * c + 1] = o[4 * c + 1] * fa0 + x.y * fb0;
                    o[4 * c + 2] = o[4 * c + 2] * fa1 + x.z * fb1;
                    o[4 * c + 3] = o[4 * c + 3] * fa1 + x.w * fb1;
                }
            }
        }
        if (!split || cw == 0) fa_store_rows<D / 8>(p, o, l0, l1, r0, h, D, t);
    }
#endif
}

/* ------------------------------------------------------------------------------------------- */
/* host side                                                                                     */
/* ------------------------------------------------------------------------------------------- */
static __thread char g_fa_err[256];
static __thread const char *g_fa_last = "none";
static volatile int g_fa_force = WM_FA_IMPL_AUTO;

static int fa_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_fa_err, sizeof g_fa_err, fmt, ap);
    va_end(ap);
    return -1;
}

extern "C" const char *wm_flash_attn_error(void) { return g_fa_err; }
extern "C" void wm_flash_attn_force(int impl) { g_fa_force = impl; }
extern "C" const char *wm_flash_attn_last_impl(void) { return g_fa_last; }

typedef CUresult (*fa_encode_fn)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *, const cuuint64_t *,
                                 const cuuint64_t *, const cuuint32_t *, const cuuint32_t *, CUtensorMapInterleave,
                                 CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

/* cuTensorMapEncodeTiled through the runtime's driver entry point: no -lcuda needed */
static fa_encode_fn fa_get_encode(void) {
    static fa_encode_fn fn = nullptr;
    static int tried = 0;
    if (!tried) {
        void *f = nullptr;
        cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q) ==
                cudaSuccess &&
            q == cudaDriverEntryPointSuccess)
            fn = (fa_encode_fn)f;
        else
            (void)cudaGetLastError();
        tried = 1;
    }
    return fn;
}

extern "C" int wm_flash_attn_has_wgmma(void) {
    static signed char cache[64]; /* per device: 0 unknown, 1 yes, -1 no */
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    if (dev >= 0 && dev < 64 && cache[dev]) return cache[dev] > 0;
    int ok = 0, major = 0, minor = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess && major == 9 &&
        minor == 0 && fa_get_encode()) {
        cudaFuncAttributes fa;
        /* the kernel has static shared memory (its mbarriers) only when built for sm_90a */
        if (cudaFuncGetAttributes(&fa, fa_wgmma_kernel<128, false, 3>) == cudaSuccess && fa.sharedSizeBytes > 0)
            ok = 1;
        else
            (void)cudaGetLastError();
    }
    if (dev >= 0 && dev < 64) cache[dev] = ok ? 1 : -1;
    return ok;
}

static int fa_sm_count(void) {
    static int cache[64];
    int dev = 0, n = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return 0;
    if (dev >= 0 && dev < 64 && cache[dev]) return cache[dev];
    if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) n = 0;
    if (dev >= 0 && dev < 64) cache[dev] = n;
    return n;
}

static int fa_map(CUtensorMap *m, const void *base, int64_t cols, int64_t rows, int64_t ld) {
    cuuint64_t dims[2] = {(cuuint64_t)cols, (cuuint64_t)rows};
    cuuint64_t strides[1] = {(cuuint64_t)ld * 2};
    cuuint32_t box[2] = {64, 128}; /* 64 bf16 = one 128-byte swizzle row, 128 rows = one tile */
    cuuint32_t es[2] = {1, 1};
    CUresult r = fa_get_encode()(m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<void *>(base), dims, strides, box,
                                 es, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                 CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    return r == CUDA_SUCCESS ? 0 : (int)r;
}

template <int D, bool BIAS, int ST>
static cudaError_t fa_launch_wgmma_st(const FaParams &p, const CUtensorMap &mq, const CUtensorMap &mk,
                                      const CUtensorMap &mv, cudaStream_t stream) {
    const int smem = fa_wg_smem_bytes<D, ST>();
    cudaError_t e =
        cudaFuncSetAttribute(fa_wgmma_kernel<D, BIAS, ST>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e != cudaSuccess) return e;
    const int units = p.n_qblocks * p.H;
    fa_wgmma_kernel<D, BIAS, ST><<<p.n_full + 2 * (units - p.n_full), FA_WG_THREADS, smem, stream>>>(mq, mk, mv, p);
    return cudaGetLastError();
}
template <int D, bool BIAS>
static cudaError_t fa_launch_wgmma(const FaParams &p, int stages, const CUtensorMap &mq, const CUtensorMap &mk,
                                   const CUtensorMap &mv, cudaStream_t stream) {
    return stages == 2 ? fa_launch_wgmma_st<D, BIAS, 2>(p, mq, mk, mv, stream)
                       : fa_launch_wgmma_st<D, BIAS, 3>(p, mq, mk, mv, stream);
}

template <int D, bool BIAS>
static cudaError_t fa_launch_mma(const FaParams &p, cudaStream_t stream) {
    const int smem = fa_mma_smem_bytes<D>();
    cudaError_t e = cudaFuncSetAttribute(fa_mma_kernel<D, BIAS>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e != cudaSuccess) return e;
    fa_mma_kernel<D, BIAS><<<dim3(p.n_qblocks, p.H), 256, smem, stream>>>(p);
    return cudaGetLastError();
}

extern "C" int wm_flash_attn(const wm_fa_args *a, cudaStream_t stream) {
    if (!a) return fa_fail("wm_flash_attn: NULL arguments");
    if (a->D != 64 && a->D != 128) return fa_fail("wm_flash_attn: head dim %d unsupported (64 or 128)", a->D);
    if (a->Mq < 0 || a->Mk < 0 || a->H < 1 || a->H > 65535)
        return fa_fail("wm_flash_attn: bad sizes Mq=%d Mk=%d H=%d", a->Mq, a->Mk, a->H);
    if (a->Mq == 0) {
        g_fa_last = "none";
        return 0;
    }
    const int64_t hd = (int64_t)a->H * a->D;
    if (!a->q || !a->out == !a->out16 || (a->Mk > 0 && (!a->k || !a->v)))
        return fa_fail("wm_flash_attn: NULL tensor (or both out and out16)");
    if (a->ldq < hd || a->ldkv < hd || a->ldo < hd)
        return fa_fail("wm_flash_attn: row strides (%lld, %lld, %lld) below H*D=%lld", (long long)a->ldq,
                       (long long)a->ldkv, (long long)a->ldo, (long long)hd);
    if ((a->ldq & 7) || (a->ldkv & 7) || (a->ldo & 1))
        return fa_fail("wm_flash_attn: ldq and ldkv must be multiples of 8, ldo even");
    if ((((uintptr_t)a->q) | ((uintptr_t)a->k) | ((uintptr_t)a->v)) & 15 || ((uintptr_t)a->out & 7) ||
        ((uintptr_t)a->out16 & 3))
        return fa_fail("wm_flash_attn: q/k/v must be 16-byte aligned, out 8-byte and out16 4-byte aligned");
    if (!(a->scale > 0.f) || !isfinite(a->scale)) return fa_fail("wm_flash_attn: scale must be finite and > 0");
    if (a->key_bias && a->bias_head_stride < 0) return fa_fail("wm_flash_attn: negative bias head stride");
    if ((a->kb_offsets == NULL) != (a->kb_indices == NULL))
        return fa_fail("wm_flash_attn: kb_offsets and kb_indices go together");

    FaParams p;
    p.q = a->q;
    p.k = a->k;
    p.v = a->v;
    p.ldq = a->ldq;
    p.ldkv = a->ldkv;
    p.out = a->out;
    p.out16 = a->out16;
    p.ldo = a->ldo;
    p.Mq = a->Mq;
    p.Mk = a->Mk;
    p.H = a->H;
    p.scale_log2 = a->scale * FA_LOG2E;
    p.bias = a->key_bias;
    p.bias_stride = a->bias_head_stride;
    p.kb_off = a->kb_offsets;
    p.kb_idx = a->kb_indices;
    p.n_qblocks = (a->Mq + FA_BQ - 1) / FA_BQ;
    p.n_kblocks = (a->Mk + FA_BK - 1) / FA_BK;
    p.pingpong = 1;
    if (a->Mk == 0) { /* no keys: every row is empty -> zeros */
        p.kb_off = p.kb_idx = nullptr;
        p.bias = nullptr;
    }
    const bool bias = p.bias != nullptr;

    const int force = g_fa_force & 0xff, flags = g_fa_force & ~0xff;
    bool use_wg;
    p.pingpong = !(flags & WM_FA_NO_PINGPONG);
    const int stages = (flags & WM_FA_TWO_STAGES) ? 2 : 3;
    if (force == WM_FA_IMPL_MMA) {
        use_wg = false;
    } else if (force == WM_FA_IMPL_WGMMA) {
        if (!wm_flash_attn_has_wgmma())
            return fa_fail("wm_flash_attn: the Hopper kernel is unavailable (needs an sm_90a build and a 9.0 device)");
        use_wg = a->Mk > 0;
    } else {
        use_wg = a->Mk > 0 && wm_flash_attn_has_wgmma();
    }

    /* Wave balance: one CTA per (query block, head) unit, one CTA per SM. When the last wave holds
     * R units and 2R CTAs fit on the SMs, those R units run as 2R half CTAs of 64 rows each, so
     * the last wave takes half as long (444 units on 132 SMs: 4 waves -> 3.5). */
    {
        const int units = p.n_qblocks * p.H, sms = fa_sm_count();
        p.n_full = units;
        if (sms > 0 && !(flags & WM_FA_NO_SPLIT)) {
            const int r = units % sms;
            if (r != 0 && 2 * r <= sms) p.n_full = units - r;
        }
    }

    cudaError_t e = cudaSuccess;
    CUtensorMap mq, mk, mv;
    if (use_wg) {
        int r;
        if ((r = fa_map(&mq, a->q, hd, a->Mq, a->ldq)) || (r = fa_map(&mk, a->k, hd, a->Mk, a->ldkv)) ||
            (r = fa_map(&mv, a->v, hd, a->Mk, a->ldkv))) {
            if (force != WM_FA_IMPL_AUTO) return fa_fail("wm_flash_attn: cuTensorMapEncodeTiled failed (%d)", r);
            use_wg = false; /* automatic choice: fall back to the portable kernel */
        }
    }
    if (use_wg) {
        if (a->D == 128)
            e = bias ? fa_launch_wgmma<128, true>(p, stages, mq, mk, mv, stream)
                     : fa_launch_wgmma<128, false>(p, stages, mq, mk, mv, stream);
        else
            e = bias ? fa_launch_wgmma<64, true>(p, stages, mq, mk, mv, stream)
                     : fa_launch_wgmma<64, false>(p, stages, mq, mk, mv, stream);
    } else {
        if (a->D == 128)
            e = bias ? fa_launch_mma<128, true>(p, stream) : fa_launch_mma<128, false>(p, stream);
        else
            e = bias ? fa_launch_mma<64, true>(p, stream) : fa_launch_mma<64, false>(p, stream);
    }
    if (e != cudaSuccess) return fa_fail("wm_flash_attn: launch failed: %s", cudaGetErrorString(e));
    g_fa_last = use_wg ? "wgmma" : "mma";
    return 0;
}
