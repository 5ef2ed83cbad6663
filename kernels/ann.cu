/* ann.cu - kernels of TempCache, AnnSA and AnnCA (see ann.cuh for the contracts).
 *
 * - match_*: the unit-norm match plane, the running argmax over tiles of a cuBLAS score matrix,
 *   the exact fp32 similarity of the chosen pair.
 * - lsh_hash: sign-LSH as a fused fp32 GEMM + sign: a thread hashes 2-4 head vectors (staged through
 *   shared memory) against the fp32 projection (broadcast float4 reads), so no score matrix goes
 *   through memory and the products are exactly those of the bf16 values with the fp32 projection,
 *   the numbers the CPU hashes; only the order of the fp32 sums differs.
 * - ann_sort: stable counting sort of rows by (table-0 code, row) per head, in tiles of 1024 rows:
 *   per-tile histograms, one scan per head over (code, tile), then a scatter whose in-tile ranks
 *   come from __match_any_sync (lanes of equal code) and per-warp counts.
 * - ann_block_bits / ann_csr: 256-bit bucket sets per (head, 128-row block, table), then the CSR
 *   list of key blocks per query block (count, scan, ordered fill), on the device.
 * - gathers/scatters between the original and the per-head orders (16 bytes per thread).
 * - annca_*: per (group, head) key selection, compaction and gather into a padded view. */
#include "ann.cuh"
#include "common.cuh"

#include <math.h>

#define ANN_TILE 1024 /* rows per sort tile (one thread each) */
#define ANN_BLK 128   /* the flash kernel's query / key block */

/* ------------------------------------------------------------------------------------------- */
/* block scan helpers                                                                            */
/* ------------------------------------------------------------------------------------------- */

/* Exclusive prefix sum of v over the block (blockDim.x a multiple of 32); *total gets the sum.
 * sh: 33 ints of shared memory. */
static __device__ __forceinline__ int ann_block_excl_scan(int v, int *sh, int *total) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    int x = v;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const int y = __shfl_up_sync(0xffffffffu, x, o);
        if (lane >= o) x += y;
    }
    __syncthreads(); /* sh may still be read by a previous call */
    if (lane == 31) sh[warp] = x;
    __syncthreads();
    if (warp == 0) {
        int w = lane < nw ? sh[lane] : 0;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const int y = __shfl_up_sync(0xffffffffu, w, o);
            if (lane >= o) w += y;
        }
        if (lane < nw) sh[lane] = w; /* inclusive over warps */
        if (lane == 31) sh[32] = w;
    }
    __syncthreads();
    const int before = warp > 0 ? sh[warp - 1] : 0;
    *total = sh[32];
    return before + x - v;
}

/* out[0..n) = exclusive scan of in[0..n) by one block (out may be in); returns the sum (to every
 * thread). */
static __device__ int ann_block_scan_array(const int *in, int *out, int n, int *sh) {
    const int per = (n + (int)blockDim.x - 1) / (int)blockDim.x;
    const int b = threadIdx.x * per, e = min(n, b + per);
    int s = 0;
    for (int i = b; i < e; i++) s += in[i];
    int total;
    int run = ann_block_excl_scan(s, sh, &total);
    for (int i = b; i < e; i++) {
        const int t = in[i];
        out[i] = run;
        run += t;
    }
    return total;
}

/* ------------------------------------------------------------------------------------------- */
/* TempCache                                                                                     */
/* ------------------------------------------------------------------------------------------- */

static __global__ void match_normalize_kernel(uint16_t *dst, const float *x, int64_t n, int dim) {
    __shared__ float sh[32];
    for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {
        const float *xr = x + r * dim;
        float ss = 0.f;
        for (int i = threadIdx.x; i < dim; i += blockDim.x) ss = fmaf(xr[i], xr[i], ss);
        ss = wm_block_sum(ss, sh);
        const float inv = ss > 0.f ? 1.0f / sqrtf(ss) : 0.f;
        uint16_t *dr = dst + r * dim;
        for (int i = threadIdx.x; i < dim; i += blockDim.x) dr[i] = wm_f32_to_bf16(xr[i] * inv);
    }
}

extern "C" cudaError_t wm_cuda_match_normalize(uint16_t *dst, const float *x, int64_t n, int dim,
                                               cudaStream_t stream) {
    if (n <= 0 || dim <= 0) return cudaSuccess;
    match_normalize_kernel<<<(unsigned)(n < 65536 ? n : 65536), 256, 0, stream>>>(dst, x, n, dim);
    return cudaGetLastError();
}

/* one warp per row */
static __global__ void match_argmax_kernel(const float *S, int64_t ldS, int rows, int cols, int col0,
                                           float *bestv, int64_t *besti, int first) {
    const int lane = threadIdx.x & 31;
    const int row = (int)((blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5);
    if (row >= rows) return;
    const float *s = S + (int64_t)row * ldS;
    float bv = -INFINITY;
    int bj = -1;
    for (int j = lane; j < cols; j += 32) {
        const float x = s[j];
        if (bj < 0 || x > bv) bv = x, bj = j; /* ascending j per lane: ties keep the smaller */
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const int oj = __shfl_xor_sync(0xffffffffu, bj, o);
        const bool take = oj >= 0 && (bj < 0 || ov > bv || (ov == bv && oj < bj));
        if (take) bv = ov, bj = oj;
    }
    if (lane == 0 && bj >= 0) {
        if (first || bv > bestv[row]) { /* the earlier tile has the smaller columns: keeps ties */
            bestv[row] = bv;
            besti[row] = (int64_t)col0 + bj;
        }
    }
}

extern "C" cudaError_t wm_cuda_match_argmax(const float *S, int64_t ldS, int rows, int cols, int col0,
                                            float *bestv, int64_t *besti, int first, cudaStream_t stream) {
    if (rows <= 0 || cols <= 0) return cudaSuccess;
    const int threads = 256;
    const unsigned blocks = (unsigned)(((int64_t)rows * 32 + threads - 1) / threads);
    match_argmax_kernel<<<blocks, threads, 0, stream>>>(S, ldS, rows, cols, col0, bestv, besti, first);
    return cudaGetLastError();
}

static __global__ void match_sim_kernel(float *sim, const uint16_t *m, int dim, int64_t q0, const int64_t *besti,
                                        int64_t n) {
    const int lane = threadIdx.x & 31;
    const int64_t i = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
    if (i >= n) return;
    const int64_t j = besti[i];
    float s = 0.f;
    if (j >= 0) {
        const uint16_t *a = m + (q0 + i) * dim, *b = m + j * dim;
        for (int d = lane; d < dim; d += 32) s = fmaf(wm_bf16_to_f32(a[d]), wm_bf16_to_f32(b[d]), s);
        s = wm_warp_sum(s);
    }
    if (lane == 0) sim[i] = s;
}

extern "C" cudaError_t wm_cuda_match_sim(float *sim, const uint16_t *match, int dim, int64_t q0,
                                         const int64_t *besti, int64_t n, cudaStream_t stream) {
    if (n <= 0) return cudaSuccess;
    const int threads = 256;
    match_sim_kernel<<<(unsigned)((n * 32 + threads - 1) / threads), threads, 0, stream>>>(sim, match, dim, q0,
                                                                                           besti, n);
    return cudaGetLastError();
}

static __global__ void kv_merge_kernel(uint16_t *v, int dim, const int64_t *dst, const int64_t *src,
                                       const float *a, const float *b, int64_t n) {
    for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
        uint16_t *d = v + dst[i] * dim;
        const uint16_t *s = v + src[i] * dim;
        const float ai = a[i], bi = b[i];
        for (int e = threadIdx.x; e < dim; e += blockDim.x)
            d[e] = wm_f32_to_bf16(ai * wm_bf16_to_f32(d[e]) + bi * wm_bf16_to_f32(s[e]));
    }
}

extern "C" cudaError_t wm_cuda_kv_merge(uint16_t *v, int dim, const int64_t *dst, const int64_t *src,
                                        const float *a, const float *b, int64_t n, cudaStream_t stream) {
    if (n <= 0 || dim <= 0) return cudaSuccess;
    kv_merge_kernel<<<(unsigned)(n < 65536 ? n : 65536), 256, 0, stream>>>(v, dim, dst, src, a, b, n);
    return cudaGetLastError();
}

static __global__ void gather_rows_kernel(uint32_t *dst, const uint32_t *src, const int64_t *idx, int64_t n,
                                          int64_t words) {
    const int64_t total = n * words;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total;
         e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = e / words, w = e - r * words;
        dst[e] = src[idx[r] * words + w];
    }
}
static __global__ void gather_rows_kernel16(uint4 *dst, const uint4 *src, const int64_t *idx, int64_t n,
                                            int64_t words) {
    const int64_t total = n * words;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total;
         e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = e / words, w = e - r * words;
        dst[e] = src[idx[r] * words + w];
    }
}

extern "C" cudaError_t wm_cuda_gather_rows(void *dst, const void *src, const int64_t *idx, int64_t n,
                                           size_t row_bytes, cudaStream_t stream) {
    if (n <= 0 || row_bytes == 0) return cudaSuccess;
    if (row_bytes % 4) return cudaErrorInvalidValue;
    const int threads = 256;
    if (row_bytes % 16 == 0 && ((uintptr_t)dst | (uintptr_t)src) % 16 == 0) {
        const int64_t words = (int64_t)(row_bytes / 16);
        gather_rows_kernel16<<<wm_grid_for((size_t)(n * words), threads), threads, 0, stream>>>(
            (uint4 *)dst, (const uint4 *)src, idx, n, words);
    } else {
        const int64_t words = (int64_t)(row_bytes / 4);
        gather_rows_kernel<<<wm_grid_for((size_t)(n * words), threads), threads, 0, stream>>>(
            (uint32_t *)dst, (const uint32_t *)src, idx, n, words);
    }
    return cudaGetLastError();
}

/* ------------------------------------------------------------------------------------------- */
/* sign-LSH                                                                                      */
/* ------------------------------------------------------------------------------------------- */

/* A block of 128 threads hashes 128*VPT vectors, VPT per thread (local t + 128 j). The vectors pass
 * through shared memory 16 dimensions at a time, as bf16 (an fp32 input is rounded while it is
 * staged), loaded in coalesced 16-byte pieces; rows are 48 bytes apart, so 8 threads reading 16
 * bytes of 8 consecutive rows hit 8 different bank groups. Then per 8 dimensions: one 16-byte read
 * per vector, and NP/4 broadcast float4 reads of the projection that feed VPT*4 FMAs each (the
 * broadcast reads, not the FMAs, were the limit at VPT = 2). */
#define LSH_DC 16 /* dimensions per staging round */
#define LSH_RS 48 /* bytes per staged row: 32 + 16 of padding */

template <int D, int NP, int VPT, bool F32>
static __global__ void __launch_bounds__(128) lsh_hash_kernel(uint8_t *codes, const void *x, int64_t nvec,
                                                              const float *proj, int bits, int tables, int vec) {
    constexpr int VB = 128 * VPT;
    __shared__ __align__(16) float sp[D * NP];
    __shared__ __align__(16) uint8_t sx[VB * LSH_RS];
    const int t = threadIdx.x;
    for (int i = t; i < D * NP / 4; i += blockDim.x)
        reinterpret_cast<float4 *>(sp)[i] = reinterpret_cast<const float4 *>(proj)[i];
    const int64_t vbase = blockIdx.x * (int64_t)VB;
    float acc[VPT][NP];
#pragma unroll
    for (int j = 0; j < VPT; j++)
#pragma unroll
        for (int n = 0; n < NP; n++) acc[j][n] = 0.f;
#pragma unroll 1
    for (int d0 = 0; d0 < D; d0 += LSH_DC) {
        __syncthreads(); /* the previous round is consumed (and the projection is staged) */
        if constexpr (F32) {
            for (int i = t; i < VB * (LSH_DC / 4); i += 128) {
                const int vl = i / (LSH_DC / 4), part = i % (LSH_DC / 4);
                const int64_t v = vbase + vl;
                uint2 o = make_uint2(0, 0);
                if (v < nvec) {
                    const float *p = (const float *)x + v * D + d0 + part * 4;
                    const float4 f = vec ? *reinterpret_cast<const float4 *>(p) : make_float4(p[0], p[1], p[2], p[3]);
                    o.x = (uint32_t)wm_f32_to_bf16(f.x) | ((uint32_t)wm_f32_to_bf16(f.y) << 16);
                    o.y = (uint32_t)wm_f32_to_bf16(f.z) | ((uint32_t)wm_f32_to_bf16(f.w) << 16);
                }
                *reinterpret_cast<uint2 *>(sx + vl * LSH_RS + part * 8) = o;
            }
        } else {
            for (int i = t; i < VB * (LSH_DC / 8); i += 128) {
                const int vl = i / (LSH_DC / 8), part = i % (LSH_DC / 8);
                const int64_t v = vbase + vl;
                const uint4 u = v < nvec ? *reinterpret_cast<const uint4 *>((const uint16_t *)x + v * D + d0 + part * 8)
                                         : make_uint4(0, 0, 0, 0);
                *reinterpret_cast<uint4 *>(sx + vl * LSH_RS + part * 16) = u;
            }
        }
        __syncthreads();
#pragma unroll
        for (int g = 0; g < LSH_DC / 8; g++) {
            float xv[VPT][8];
#pragma unroll
            for (int j = 0; j < VPT; j++) {
                const uint4 u = *reinterpret_cast<const uint4 *>(sx + (t + 128 * j) * LSH_RS + g * 16);
                const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
                for (int e = 0; e < 4; e++)
                    xv[j][2 * e] = __uint_as_float(w[e] << 16), xv[j][2 * e + 1] = __uint_as_float(w[e] & 0xFFFF0000u);
            }
#pragma unroll
            for (int e = 0; e < 8; e++) {
                const float4 *row = reinterpret_cast<const float4 *>(sp + (d0 + g * 8 + e) * NP);
#pragma unroll
                for (int n4 = 0; n4 < NP / 4; n4++) {
                    const float4 p = row[n4];
#pragma unroll
                    for (int j = 0; j < VPT; j++) {
                        acc[j][4 * n4 + 0] = fmaf(xv[j][e], p.x, acc[j][4 * n4 + 0]);
                        acc[j][4 * n4 + 1] = fmaf(xv[j][e], p.y, acc[j][4 * n4 + 1]);
                        acc[j][4 * n4 + 2] = fmaf(xv[j][e], p.z, acc[j][4 * n4 + 2]);
                        acc[j][4 * n4 + 3] = fmaf(xv[j][e], p.w, acc[j][4 * n4 + 3]);
                    }
                }
            }
        }
    }
    const uint32_t mask = (1u << bits) - 1u;
#pragma unroll
    for (int j = 0; j < VPT; j++) {
        uint32_t m = 0;
#pragma unroll
        for (int n = 0; n < NP; n++) m |= (acc[j][n] >= 0.f ? 1u : 0u) << n;
        const int64_t v = vbase + t + 128 * j;
        if (v < nvec)
            for (int tb = 0; tb < tables; tb++) codes[v * tables + tb] = (uint8_t)((m >> (tb * bits)) & mask);
    }
}

template <int D, int NP>
static cudaError_t lsh_launch(uint8_t *codes, const void *x, int x_is_f32, int64_t nvec, const float *proj,
                              int bits, int tables, cudaStream_t stream) {
    constexpr int VPT = NP <= 16 ? 4 : 2;
    const int threads = 128;
    const int64_t blocks = (nvec + 128 * VPT - 1) / (128 * VPT);
    if (blocks > 0x7FFFFFFF) return cudaErrorInvalidValue;
    const int vec = ((uintptr_t)x % 16) == 0;
    if (x_is_f32)
        lsh_hash_kernel<D, NP, VPT, true><<<(unsigned)blocks, threads, 0, stream>>>(codes, x, nvec, proj, bits, tables,
                                                                                    vec);
    else
        lsh_hash_kernel<D, NP, VPT, false><<<(unsigned)blocks, threads, 0, stream>>>(codes, x, nvec, proj, bits,
                                                                                     tables, vec);
    return cudaGetLastError();
}

extern "C" cudaError_t wm_cuda_lsh_hash(uint8_t *codes, const void *x, int x_is_f32, int64_t nvec, int D,
                                        const float *proj, int npad, int bits, int tables, cudaStream_t stream) {
    if (nvec <= 0) return cudaSuccess;
    if (bits < 1 || bits > 8 || tables < 1 || bits * tables > npad || (D != 64 && D != 128))
        return cudaErrorInvalidValue;
    if (!x_is_f32 && ((uintptr_t)x % 16) != 0) return cudaErrorInvalidValue; /* bf16 rows: uint4 loads */
#define WM_LSH_CASE(d, np) \
    if (D == d && npad == np) return lsh_launch<d, np>(codes, x, x_is_f32, nvec, proj, bits, tables, stream);
    WM_LSH_CASE(128, 8) WM_LSH_CASE(128, 16) WM_LSH_CASE(128, 32)
    WM_LSH_CASE(64, 8) WM_LSH_CASE(64, 16) WM_LSH_CASE(64, 32)
#undef WM_LSH_CASE
    return cudaErrorInvalidValue;
}

/* ------------------------------------------------------------------------------------------- */
/* AnnSA: ordering                                                                               */
/* ------------------------------------------------------------------------------------------- */

struct AnnSort2 {
    wm_ann_sort_set s[2];
    int ntiles[2];
};

/* cnt[(h*256 + c)*ntiles + tile] = rows of the tile with table-0 code c */
static __global__ void __launch_bounds__(ANN_TILE) ann_sort_hist(const AnnSort2 p, int H) {
    const wm_ann_sort_set s = blockIdx.z ? p.s[1] : p.s[0];
    const int ntiles = blockIdx.z ? p.ntiles[1] : p.ntiles[0], tile = blockIdx.x, h = blockIdx.y;
    if (tile >= ntiles) return;
    __shared__ int hist[256];
    if (threadIdx.x < 256) hist[threadIdx.x] = 0;
    __syncthreads();
    const int row = tile * ANN_TILE + threadIdx.x;
    if (row < s.n) atomicAdd(&hist[s.codes[((int64_t)row * H + h) * s.tables]], 1);
    __syncthreads();
    if (threadIdx.x < 256) s.cnt[((int64_t)h * 256 + threadIdx.x) * ntiles + tile] = hist[threadIdx.x];
}

/* per head: exclusive scan over (code, tile) -> the first position of each (code, tile) */
static __global__ void __launch_bounds__(ANN_TILE) ann_sort_scan(const AnnSort2 p) {
    const wm_ann_sort_set s = blockIdx.y ? p.s[1] : p.s[0];
    const int ntiles = blockIdx.y ? p.ntiles[1] : p.ntiles[0], h = blockIdx.x;
    if (ntiles == 0) return;
    __shared__ int sh[33];
    ann_block_scan_array(s.cnt + (int64_t)h * 256 * ntiles, s.cnt + (int64_t)h * 256 * ntiles, 256 * ntiles, sh);
}

static __global__ void __launch_bounds__(ANN_TILE) ann_sort_scatter(const AnnSort2 p, int H) {
    const wm_ann_sort_set s = blockIdx.z ? p.s[1] : p.s[0];
    const int ntiles = blockIdx.z ? p.ntiles[1] : p.ntiles[0], tile = blockIdx.x, h = blockIdx.y;
    if (tile >= ntiles) return;
    __shared__ int wc[32 * 256]; /* per warp, per code: count, then exclusive prefix over warps */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int i = threadIdx.x; i < 32 * 256; i += blockDim.x) wc[i] = 0;
    __syncthreads();
    const int row = tile * ANN_TILE + threadIdx.x;
    const bool valid = row < s.n;
    const int code = valid ? (int)s.codes[((int64_t)row * H + h) * s.tables] : 256;
    const unsigned peers = __match_any_sync(0xffffffffu, code);
    const int rank = __popc(peers & ((1u << lane) - 1u));
    if (valid && rank == 0) wc[warp * 256 + code] = __popc(peers);
    __syncthreads();
    if (threadIdx.x < 256) {
        int run = 0;
        for (int w = 0; w < 32; w++) {
            const int t = wc[w * 256 + threadIdx.x];
            wc[w * 256 + threadIdx.x] = run;
            run += t;
        }
    }
    __syncthreads();
    if (valid) {
        const int pos = s.cnt[((int64_t)h * 256 + code) * ntiles + tile] + wc[warp * 256 + code] + rank;
        s.perm[(int64_t)h * s.n + pos] = row;
    }
}

extern "C" cudaError_t wm_cuda_ann_sort(const wm_ann_sort_set *sets, int nsets, int H, cudaStream_t stream) {
    if (nsets < 1 || nsets > 2 || H < 1 || H > 65535) return cudaErrorInvalidValue;
    AnnSort2 p;
    p.s[0] = sets[0];
    p.s[1] = nsets > 1 ? sets[1] : sets[0];
    int maxt = 0;
    for (int i = 0; i < 2; i++) {
        p.ntiles[i] = (i < nsets && p.s[i].n > 0) ? (p.s[i].n + ANN_TILE - 1) / ANN_TILE : 0;
        if (p.ntiles[i] > maxt) maxt = p.ntiles[i];
    }
    if (maxt == 0) return cudaSuccess;
    ann_sort_hist<<<dim3(maxt, H, nsets), ANN_TILE, 0, stream>>>(p, H);
    ann_sort_scan<<<dim3(H, nsets), ANN_TILE, 0, stream>>>(p);
    ann_sort_scatter<<<dim3(maxt, H, nsets), ANN_TILE, 0, stream>>>(p, H);
    return cudaGetLastError();
}

/* ------------------------------------------------------------------------------------------- */
/* AnnSA: block bitsets and the CSR list                                                         */
/* ------------------------------------------------------------------------------------------- */

struct AnnBits2 {
    wm_ann_bits_set s[2];
};

static __global__ void __launch_bounds__(ANN_BLK) ann_bits_kernel(const AnnBits2 p, int H) {
    const wm_ann_bits_set s = blockIdx.z ? p.s[1] : p.s[0];
    const int blk = blockIdx.x, h = blockIdx.y;
    if (blk >= s.nblocks) return;
    __shared__ uint32_t sb[4 * 8];
    if (threadIdx.x < 32) sb[threadIdx.x] = 0;
    __syncthreads();
    const int pos = blk * ANN_BLK + threadIdx.x;
    if (pos < s.n) {
        const int row = s.perm[(int64_t)h * s.n + pos];
        const uint8_t *c = s.codes + ((int64_t)row * H + h) * s.tables;
        for (int t = 0; t < s.tables; t++) atomicOr(&sb[t * 8 + (c[t] >> 5)], 1u << (c[t] & 31));
    }
    __syncthreads();
    if (threadIdx.x < s.tables * 8)
        s.bits[((int64_t)h * s.nblocks + blk) * s.tables * 8 + threadIdx.x] = sb[threadIdx.x];
}

extern "C" cudaError_t wm_cuda_ann_block_bits(const wm_ann_bits_set *sets, int nsets, int H, cudaStream_t stream) {
    if (nsets < 1 || nsets > 2 || H < 1 || H > 65535) return cudaErrorInvalidValue;
    AnnBits2 p;
    p.s[0] = sets[0];
    p.s[1] = nsets > 1 ? sets[1] : sets[0];
    int maxb = 0;
    for (int i = 0; i < nsets; i++) {
        if (p.s[i].tables < 1 || p.s[i].tables > 4) return cudaErrorInvalidValue;
        if (p.s[i].nblocks > maxb) maxb = p.s[i].nblocks;
    }
    if (maxb == 0) return cudaSuccess;
    ann_bits_kernel<<<dim3(maxb, H, nsets), ANN_BLK, 0, stream>>>(p, H);
    return cudaGetLastError();
}

static __device__ __forceinline__ bool ann_attends(const uint32_t *sq, const uint32_t *kbits_h, int kb,
                                                   int nkb_full, int tw) {
    if (kb >= nkb_full) return true;
    const uint32_t *k = kbits_h + (int64_t)kb * tw;
    for (int i = 0; i < tw; i++)
        if (sq[i] & __ldg(k + i)) return true;
    return false;
}

/* grid (nqb, H): the count of key blocks per (head, query block) */
static __global__ void ann_csr_count(int *cnt, const uint32_t *qbits, const uint32_t *kbits, int nqb, int nkb,
                                     int nkb_full, int tables) {
    const int qb = blockIdx.x, h = blockIdx.y, tw = tables * 8;
    __shared__ uint32_t sq[32];
    __shared__ int total;
    if (threadIdx.x < tw) sq[threadIdx.x] = qbits[((int64_t)h * nqb + qb) * tw + threadIdx.x];
    if (threadIdx.x == 0) total = 0;
    __syncthreads();
    const uint32_t *kh = kbits + (int64_t)h * nkb_full * tw;
    int c = 0;
    for (int kb = threadIdx.x; kb < nkb; kb += blockDim.x) c += ann_attends(sq, kh, kb, nkb_full, tw);
    c += __shfl_xor_sync(0xffffffffu, c, 16);
    c += __shfl_xor_sync(0xffffffffu, c, 8);
    c += __shfl_xor_sync(0xffffffffu, c, 4);
    c += __shfl_xor_sync(0xffffffffu, c, 2);
    c += __shfl_xor_sync(0xffffffffu, c, 1);
    if ((threadIdx.x & 31) == 0) atomicAdd(&total, c);
    __syncthreads();
    if (threadIdx.x == 0) cnt[(int64_t)h * nqb + qb] = total;
}

/* one block: kb_off = exclusive scan of cnt (+ the total at the end); the density counters */
static __global__ void __launch_bounds__(1024) ann_csr_scan(int *kb_off, const int *cnt, int n, long long all_pairs,
                                                            unsigned long long *counters) {
    __shared__ int sh[33];
    const int total = ann_block_scan_array(cnt, kb_off, n, sh);
    if (threadIdx.x == 0) {
        kb_off[n] = total;
        if (counters) {
            atomicAdd(&counters[0], (unsigned long long)total);
            atomicAdd(&counters[1], (unsigned long long)all_pairs);
        }
    }
}

/* grid (nqb, H): the attended key blocks in ascending order */
static __global__ void ann_csr_fill(int *kb_idx, const int *kb_off, const uint32_t *qbits, const uint32_t *kbits,
                                    int nqb, int nkb, int nkb_full, int tables) {
    const int qb = blockIdx.x, h = blockIdx.y, tw = tables * 8;
    __shared__ uint32_t sq[32];
    __shared__ int sh[33];
    if (threadIdx.x < tw) sq[threadIdx.x] = qbits[((int64_t)h * nqb + qb) * tw + threadIdx.x];
    __syncthreads();
    const uint32_t *kh = kbits + (int64_t)h * nkb_full * tw;
    int *out = kb_idx + kb_off[(int64_t)h * nqb + qb];
    int base = 0;
    for (int kb0 = 0; kb0 < nkb; kb0 += blockDim.x) {
        const int kb = kb0 + threadIdx.x;
        const int f = kb < nkb && ann_attends(sq, kh, kb, nkb_full, tw);
        int total;
        const int pos = ann_block_excl_scan(f, sh, &total);
        if (f) out[base + pos] = kb;
        base += total;
    }
}

extern "C" cudaError_t wm_cuda_ann_csr(int *kb_off, int *kb_idx, int *cnt, const uint32_t *qbits,
                                       const uint32_t *kbits, int H, int nqb, int nkb, int nkb_full, int tables,
                                       unsigned long long *counters, cudaStream_t stream) {
    if (H < 1 || H > 65535 || nqb < 1 || nkb < 0 || nkb_full < 0 || nkb_full > nkb || tables < 1 || tables > 4)
        return cudaErrorInvalidValue;
    ann_csr_count<<<dim3(nqb, H), 256, 0, stream>>>(cnt, qbits, kbits, nqb, nkb, nkb_full, tables);
    ann_csr_scan<<<1, 1024, 0, stream>>>(kb_off, cnt, H * nqb, (long long)H * nqb * nkb, counters);
    ann_csr_fill<<<dim3(nqb, H), 256, 0, stream>>>(kb_idx, kb_off, qbits, kbits, nqb, nkb, nkb_full, tables);
    return cudaGetLastError();
}

/* ------------------------------------------------------------------------------------------- */
/* AnnSA: permuted views                                                                         */
/* ------------------------------------------------------------------------------------------- */

/* These three move rows of H*D elements in 16-byte chunks: one block per row (grid-stride over
 * rows), one thread per chunk, so the only division is chunk -> head within a row. */
static inline unsigned ann_row_threads(int chunks) {
    int t = (chunks + 31) / 32 * 32;
    return (unsigned)(t > 1024 ? 1024 : t < 32 ? 32 : t);
}
static inline unsigned ann_row_blocks(int64_t rows) { return (unsigned)(rows < 65536 ? (rows > 0 ? rows : 1) : 65536); }

template <bool VEC>
static __global__ void ann_gather_q_kernel(uint16_t *qp, const float *q, const int *permq, int Mq, int H, int D) {
    const int cpr = D / 8, rowc = H * cpr; /* 8-element chunks per head, per row */
    const int64_t hd = (int64_t)H * D;
    for (int64_t p = blockIdx.x; p < Mq; p += gridDim.x) {
        for (int r = threadIdx.x; r < rowc; r += blockDim.x) {
            const int h = r / cpr, c = r - h * cpr;
            const int64_t src = permq[(int64_t)h * Mq + p];
            const float *s = q + src * hd + (int64_t)h * D + c * 8;
            float f[8];
            if (VEC) {
                const float4 a = *reinterpret_cast<const float4 *>(s), b = *reinterpret_cast<const float4 *>(s + 4);
                f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
            } else {
#pragma unroll
                for (int i = 0; i < 8; i++) f[i] = s[i];
            }
            uint4 o;
            o.x = (uint32_t)wm_f32_to_bf16(f[0]) | ((uint32_t)wm_f32_to_bf16(f[1]) << 16);
            o.y = (uint32_t)wm_f32_to_bf16(f[2]) | ((uint32_t)wm_f32_to_bf16(f[3]) << 16);
            o.z = (uint32_t)wm_f32_to_bf16(f[4]) | ((uint32_t)wm_f32_to_bf16(f[5]) << 16);
            o.w = (uint32_t)wm_f32_to_bf16(f[6]) | ((uint32_t)wm_f32_to_bf16(f[7]) << 16);
            *reinterpret_cast<uint4 *>(qp + p * hd + r * 8) = o;
        }
    }
}

extern "C" cudaError_t wm_cuda_ann_gather_q(uint16_t *qp, const float *q, const int *permq, int Mq, int H, int D,
                                            cudaStream_t stream) {
    if (Mq <= 0) return cudaSuccess;
    if (D % 8 || ((uintptr_t)qp % 16)) return cudaErrorInvalidValue;
    const unsigned threads = ann_row_threads(H * D / 8), blocks = ann_row_blocks(Mq);
    if ((uintptr_t)q % 16 == 0)
        ann_gather_q_kernel<true><<<blocks, threads, 0, stream>>>(qp, q, permq, Mq, H, D);
    else
        ann_gather_q_kernel<false><<<blocks, threads, 0, stream>>>(qp, q, permq, Mq, H, D);
    return cudaGetLastError();
}

static __global__ void ann_gather_kv_kernel(uint4 *kp, uint4 *vp, float *bp, const uint4 *k, const uint4 *v,
                                            const float *bias, const int *permk, int n_cache, int Mk, int H,
                                            int D) {
    const int cpr = D / 8, rowc = H * cpr; /* 16-byte chunks per head, per row */
    for (int64_t p = blockIdx.x; p < Mk; p += gridDim.x) {
        for (int r = threadIdx.x; r < rowc; r += blockDim.x) {
            const int h = r / cpr;
            const int64_t src = p < n_cache ? (int64_t)permk[(int64_t)h * n_cache + p] : p;
            const int64_t so = src * rowc + r, d = p * rowc + r;
            kp[d] = __ldg(k + so);
            vp[d] = __ldg(v + so);
            if (bp && r == h * cpr) bp[(int64_t)h * Mk + p] = bias[src];
        }
    }
}

extern "C" cudaError_t wm_cuda_ann_gather_kv(uint16_t *kp, uint16_t *vp, float *bp, const uint16_t *k,
                                             const uint16_t *v, const float *bias, const int *permk, int n_cache,
                                             int Mk, int H, int D, cudaStream_t stream) {
    if (Mk <= 0) return cudaSuccess;
    if (D % 8 || (((uintptr_t)kp | (uintptr_t)vp | (uintptr_t)k | (uintptr_t)v) % 16)) return cudaErrorInvalidValue;
    ann_gather_kv_kernel<<<ann_row_blocks(Mk), ann_row_threads(H * D / 8), 0, stream>>>(
        (uint4 *)kp, (uint4 *)vp, bias ? bp : NULL, (const uint4 *)k, (const uint4 *)v, bias, permk, n_cache, Mk, H,
        D);
    return cudaGetLastError();
}

template <bool VEC>
static __global__ void ann_scatter_out_kernel(float *out, const float *op, const int *permq, int Mq, int H, int D) {
    const int cpr = D / 4, rowc = H * cpr; /* 4-float chunks */
    const int64_t hd = (int64_t)H * D;
    for (int64_t p = blockIdx.x; p < Mq; p += gridDim.x) {
        for (int r = threadIdx.x; r < rowc; r += blockDim.x) {
            const int h = r / cpr;
            const int64_t dst = permq[(int64_t)h * Mq + p];
            const float4 x = *reinterpret_cast<const float4 *>(op + p * hd + r * 4);
            float *d = out + dst * hd + r * 4;
            if (VEC) {
                *reinterpret_cast<float4 *>(d) = x;
            } else {
                d[0] = x.x, d[1] = x.y, d[2] = x.z, d[3] = x.w;
            }
        }
    }
}

extern "C" cudaError_t wm_cuda_ann_scatter_out(float *out, const float *op, const int *permq, int Mq, int H, int D,
                                               cudaStream_t stream) {
    if (Mq <= 0) return cudaSuccess;
    if (D % 4 || (uintptr_t)op % 16) return cudaErrorInvalidValue;
    const unsigned threads = ann_row_threads(H * D / 4), blocks = ann_row_blocks(Mq);
    if ((uintptr_t)out % 16 == 0)
        ann_scatter_out_kernel<true><<<blocks, threads, 0, stream>>>(out, op, permq, Mq, H, D);
    else
        ann_scatter_out_kernel<false><<<blocks, threads, 0, stream>>>(out, op, permq, Mq, H, D);
    return cudaGetLastError();
}

/* ------------------------------------------------------------------------------------------- */
/* AnnCA                                                                                         */
/* ------------------------------------------------------------------------------------------- */

static __global__ void __launch_bounds__(256) annca_select_kernel(
    uint4 *kg, uint4 *vg, float *bg, int *cnt, int *sel, const uint4 *k, const uint4 *v, const float *bias,
    const uint8_t *qcode, const uint8_t *kcode, int Mq, int group, int F, int n_rows, int np, int H, int D,
    int tables, unsigned long long *counters) {
    const int g = blockIdx.x, h = blockIdx.y, tw = tables * 8;
    __shared__ uint32_t sq[32];
    __shared__ int sh[33];
    if (threadIdx.x < 32) sq[threadIdx.x] = 0;
    __syncthreads();
    /* the group's buckets per table */
    const int64_t r0 = (int64_t)g * group, r1 = min((int64_t)Mq, r0 + group);
    for (int64_t r = r0 + threadIdx.x; r < r1; r += blockDim.x) {
        const uint8_t *c = qcode + (r * H + h) * tables;
        for (int t = 0; t < tables; t++) atomicOr(&sq[t * 8 + (c[t] >> 5)], 1u << (c[t] & 31));
    }
    __syncthreads();
    /* the keys that share one, compacted in row order */
    int *my = sel + ((int64_t)g * H + h) * n_rows;
    int n = 0;
    for (int i0 = 0; i0 < n_rows; i0 += blockDim.x) {
        const int i = i0 + threadIdx.x;
        int f = 0;
        if (i < n_rows) {
            const uint8_t *c = kcode + ((int64_t)i * H + h) * tables;
            for (int t = 0; t < tables; t++) f |= (sq[t * 8 + (c[t] >> 5)] >> (c[t] & 31)) & 1u;
        }
        int total;
        const int pos = ann_block_excl_scan(f, sh, &total);
        if (f) my[n + pos] = i;
        n += total;
    }
    (void)tw;
    __syncthreads(); /* the list is read back by other threads of the block */
    /* gather: rows g*np + [0, np) of the view, head slice h */
    const int cpr = D / 8, rowc = H * cpr;
    for (int e = threadIdx.x; e < np * cpr; e += blockDim.x) {
        const int i = e / cpr, c = e - i * cpr;
        const int64_t dsto = ((int64_t)g * np + i) * rowc + h * cpr + c;
        if (i < n) {
            const int64_t so = (int64_t)my[i] * rowc + h * cpr + c;
            kg[dsto] = __ldg(k + so);
            vg[dsto] = __ldg(v + so);
        } else {
            kg[dsto] = make_uint4(0, 0, 0, 0);
            vg[dsto] = make_uint4(0, 0, 0, 0);
        }
    }
    for (int i = threadIdx.x; i < np; i += blockDim.x)
        bg[(int64_t)h * F * np + (int64_t)g * np + i] = i < n ? (bias ? bias[my[i]] : 0.f) : -INFINITY;
    if (threadIdx.x == 0) {
        cnt[g * H + h] = n;
        if (counters) {
            atomicAdd(&counters[2], (unsigned long long)n);
            atomicAdd(&counters[3], (unsigned long long)n_rows);
        }
    }
}

extern "C" cudaError_t wm_cuda_annca_select(uint16_t *kg, uint16_t *vg, float *bg, int *cnt, int *sel,
                                            const uint16_t *k, const uint16_t *v, const float *bias,
                                            const uint8_t *qcode, const uint8_t *kcode, int Mq, int group, int F,
                                            int n_rows, int np, int H, int D, int tables,
                                            unsigned long long *counters, cudaStream_t stream) {
    if (F <= 0) return cudaSuccess;
    if (D % 8 || tables < 1 || tables > 4 || H < 1 || H > 65535 || group < 1 || np < n_rows ||
        (((uintptr_t)kg | (uintptr_t)vg | (uintptr_t)k | (uintptr_t)v) % 16))
        return cudaErrorInvalidValue;
    annca_select_kernel<<<dim3(F, H), 256, 0, stream>>>((uint4 *)kg, (uint4 *)vg, bg, cnt, sel, (const uint4 *)k,
                                                        (const uint4 *)v, bias, qcode, kcode, Mq, group, F, n_rows,
                                                        np, H, D, tables, counters);
    return cudaGetLastError();
}

template <bool VEC>
static __global__ void annca_pad_q_kernel(uint16_t *qg, const float *q, int Mq, int group, int gp, int F, int hd) {
    const int cpr = hd / 8;
    const int64_t total = (int64_t)F * gp * cpr;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total;
         e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t R = e / cpr;
        const int c = (int)(e - R * cpr);
        const int64_t g = R / gp, i = R - g * gp, src = g * group + i;
        uint4 o = make_uint4(0, 0, 0, 0);
        if (i < group && src < Mq) {
            const float *s = q + src * hd + c * 8;
            float f[8];
            if (VEC) {
                const float4 a = *reinterpret_cast<const float4 *>(s), b = *reinterpret_cast<const float4 *>(s + 4);
                f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
            } else {
#pragma unroll
                for (int j = 0; j < 8; j++) f[j] = s[j];
            }
            o.x = (uint32_t)wm_f32_to_bf16(f[0]) | ((uint32_t)wm_f32_to_bf16(f[1]) << 16);
            o.y = (uint32_t)wm_f32_to_bf16(f[2]) | ((uint32_t)wm_f32_to_bf16(f[3]) << 16);
            o.z = (uint32_t)wm_f32_to_bf16(f[4]) | ((uint32_t)wm_f32_to_bf16(f[5]) << 16);
            o.w = (uint32_t)wm_f32_to_bf16(f[6]) | ((uint32_t)wm_f32_to_bf16(f[7]) << 16);
        }
        *reinterpret_cast<uint4 *>(qg + R * hd + c * 8) = o;
    }
}

extern "C" cudaError_t wm_cuda_annca_pad_q(uint16_t *qg, const float *q, int Mq, int group, int gp, int F, int hd,
                                           cudaStream_t stream) {
    if (F <= 0 || gp <= 0) return cudaSuccess;
    if (hd % 8 || (uintptr_t)qg % 16) return cudaErrorInvalidValue;
    const int threads = 256;
    const size_t n = (size_t)F * gp * (hd / 8);
    if ((uintptr_t)q % 16 == 0)
        annca_pad_q_kernel<true><<<wm_grid_for(n, threads), threads, 0, stream>>>(qg, q, Mq, group, gp, F, hd);
    else
        annca_pad_q_kernel<false><<<wm_grid_for(n, threads), threads, 0, stream>>>(qg, q, Mq, group, gp, F, hd);
    return cudaGetLastError();
}

/* one block: entries (h, qb) in that order, as the flash kernel indexes them */
static __global__ void __launch_bounds__(1024) annca_csr_kernel(int *kb_off, int *kb_idx, const int *cnt, int F,
                                                                int H, int qpg, int kpg) {
    __shared__ int sh[33];
    const int nqb = F * qpg, n = H * nqb;
    const int per = (n + (int)blockDim.x - 1) / (int)blockDim.x;
    const int b = threadIdx.x * per, e = min(n, b + per);
    int s = 0;
    for (int i = b; i < e; i++) {
        const int h = i / nqb, g = (i - h * nqb) / qpg;
        s += (cnt[g * H + h] + ANN_BLK - 1) / ANN_BLK;
    }
    int total;
    int run = ann_block_excl_scan(s, sh, &total);
    for (int i = b; i < e; i++) {
        const int h = i / nqb, g = (i - h * nqb) / qpg;
        const int m = (cnt[g * H + h] + ANN_BLK - 1) / ANN_BLK;
        kb_off[i] = run;
        for (int j = 0; j < m; j++) kb_idx[run + j] = g * kpg + j;
        run += m;
    }
    if (threadIdx.x == 0) kb_off[n] = total;
}

extern "C" cudaError_t wm_cuda_annca_csr(int *kb_off, int *kb_idx, const int *cnt, int F, int H, int gp, int np,
                                         cudaStream_t stream) {
    if (F <= 0) return cudaSuccess;
    if (gp % ANN_BLK || np % ANN_BLK || H < 1) return cudaErrorInvalidValue;
    annca_csr_kernel<<<1, 1024, 0, stream>>>(kb_off, kb_idx, cnt, F, H, gp / ANN_BLK, np / ANN_BLK);
    return cudaGetLastError();
}

static __global__ void annca_unpad_kernel(float *out, const float *og, int Mq, int group, int gp, int hd) {
    const int64_t total = (int64_t)Mq * hd;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total;
         e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = e / hd, c = e - r * hd, g = r / group, i = r - g * group;
        out[e] = og[(g * gp + i) * hd + c];
    }
}

extern "C" cudaError_t wm_cuda_annca_unpad_out(float *out, const float *og, int Mq, int group, int gp, int hd,
                                               cudaStream_t stream) {
    if (Mq <= 0) return cudaSuccess;
    const int threads = 256;
    annca_unpad_kernel<<<wm_grid_for((size_t)Mq * hd, threads), threads, 0, stream>>>(out, og, Mq, group, gp, hd);
    return cudaGetLastError();
}
