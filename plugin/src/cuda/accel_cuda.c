/* accel_cuda.c - the CUDA backend's TempCache, AnnSA and AnnCA ops (docs/ACCEL.md; contracts in
 * backend.h), wired on the kernels of kernels/ann.cuh, cuBLAS (kv_match) and wm_flash_attn.
 *
 * Storage: the match plane of a store is bf16 [rows, dim] (wm_kv.match, NULL until enabled), like
 * K and V. A wm_lsh keeps its projection on the device as fp32 [D][npad] (npad = 8, 16 or 32 >=
 * tables*bits, zero columns after tables*bits), so hashing multiplies the bf16 values as stored by
 * the same fp32 projection the CPU uses, accumulating in fp32: the buckets agree with the CPU's up
 * to the order of the fp32 sums (a projection within rounding of 0 can differ).
 *
 * Synchronisation: kv_match, kv_read_match, kv_load_match, lsh_new and lsh_take_counts wait for
 * the device (they hand host memory back, or may read pinned host memory later). kv_merge and
 * kv_compact stage their host arrays through pageable memory (copied before cudaMemcpyAsync
 * returns) and do not wait. attention_annsa and attention_annca neither wait nor call cudaMalloc:
 * their buffers come from the backend's stream-ordered scratch pool (kept reserved between ops),
 * and the block lists are built on the device; the density counters are device counters too. */
#include "ann.cuh"
#include "common.h"
#include "convert.cuh"
#include "cuda_backend.h"
#include "elementwise.cuh"
#include "flash_attn.cuh"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct wm_lsh {
    int D, bits, tables, npad;
    float *proj; /* device fp32 [D][npad] */
};

/* the op's failure: message and the per-thread failure flag */
static void fail(const char *op, const char *why) {
    wm_note_failure(wm_set_error(WM_ERR_INTERNAL, "%s: %s", op, why));
}
static void bad_args(const char *op, const char *why) {
    wm_note_failure(wm_set_error(WM_ERR_INVALID_ARGUMENT, "%s: %s", op, why));
}

/* Carving one scratch allocation into 256-byte aligned pieces: take() returns an offset. */
static size_t take(size_t *total, size_t bytes) {
    const size_t o = *total;
    *total += (bytes + 255) & ~(size_t)255;
    return o;
}
static char *scratch_aligned(cuda_impl *c, size_t bytes, const char *what, void **raw) {
    *raw = wm_cu_scratch(c, bytes + 256, what);
    if (!*raw) return NULL;
    return (char *)(((uintptr_t)*raw + 255) & ~(uintptr_t)255);
}

/* ---- the match plane ---- */

int wm_cu_match_enable(cuda_impl *c, wm_kv *kv) {
    if (kv->match) return 1;
    const size_t bytes = (size_t)(kv->rows > 0 ? kv->rows : 1) * (size_t)kv->dim * sizeof(uint16_t);
    kv->match = wm_cu_malloc(c, bytes, "the K/V match plane");
    if (!kv->match) {
        wm_note_failure(WM_ERR_OUT_OF_MEMORY);
        return 0;
    }
    c->bytes += bytes;
    return wm_cu_ok(cudaMemsetAsync(kv->match, 0, bytes, c->stream), "kv_write_match (enable)");
}

void wm_cu_kv_write_match(wm_backend *be, wm_kv *kv, int64_t row, const float *x, int64_t n) {
    cuda_impl *c = cuda_of(be);
    if (n <= 0) return;
    if (row < 0 || row + n > kv->rows) {
        bad_args("kv_write_match", "rows outside the store");
        return;
    }
    if (!wm_cu_match_enable(c, kv)) return;
    wm_cu_ok(wm_cuda_match_normalize(kv->match + (size_t)row * kv->dim, x, n, kv->dim, c->stream),
             "kv_write_match");
}

void wm_cu_kv_read_match(wm_backend *be, const wm_kv *kv, float *host, int64_t row, int64_t n) {
    cuda_impl *c = cuda_of(be);
    const size_t cnt = (size_t)(n > 0 ? n : 0) * kv->dim;
    if (!cnt) return;
    if (!kv->match) {
        memset(host, 0, cnt * sizeof(float));
        return;
    }
    float *tmp = wm_cu_scratch(c, cnt * sizeof(float), "kv_read_match");
    if (!tmp) return;
    wm_cu_ok(wm_cuda_bf16_to_f32(tmp, kv->match + (size_t)row * kv->dim, cnt, c->stream), "kv_read_match");
    wm_cu_ok(cudaMemcpyAsync(host, tmp, cnt * sizeof(float), cudaMemcpyDeviceToHost, c->stream), "kv_read_match");
    wm_cu_scratch_free(c, tmp);
    wm_cu_ok(cudaStreamSynchronize(c->stream), "kv_read_match (sync)");
}

void wm_cu_kv_load_match(wm_backend *be, wm_kv *kv, const float *host, int64_t row, int64_t n) {
    cuda_impl *c = cuda_of(be);
    const size_t cnt = (size_t)(n > 0 ? n : 0) * kv->dim;
    if (!cnt) return;
    if (!wm_cu_match_enable(c, kv)) return;
    float *tmp = wm_cu_scratch(c, cnt * sizeof(float), "kv_load_match");
    if (!tmp) return;
    wm_cu_ok(cudaMemcpyAsync(tmp, host, cnt * sizeof(float), cudaMemcpyHostToDevice, c->stream), "kv_load_match");
    wm_cu_ok(wm_cuda_f32_to_bf16(kv->match + (size_t)row * kv->dim, tmp, cnt, c->stream), "kv_load_match");
    wm_cu_scratch_free(c, tmp);
    wm_cu_ok(cudaStreamSynchronize(c->stream), "kv_load_match (sync)"); /* the host array may be pinned */
}

/* ---- kv_match: a bf16 GEMM of the match rows, tiled under a scratch budget, and an argmax ---- */

#define MATCH_SCORE_BUDGET ((int64_t)64 << 20) /* fp32 scores per tile: 256 MB */

void wm_cu_kv_match(wm_backend *be, const wm_kv *kv, int64_t q0, int64_t nq, int64_t c0, int64_t nc, int64_t *best,
                    float *sim) {
    cuda_impl *c = cuda_of(be);
    if (nq <= 0) return;
    if (nc <= 0 || !kv->match) { /* no candidates; or no plane: every row is zero, the first wins */
        for (int64_t i = 0; i < nq; i++) best[i] = nc > 0 ? c0 : -1, sim[i] = 0.0f;
        return;
    }
    if (q0 < 0 || c0 < 0 || q0 + nq > kv->rows || c0 + nc > kv->rows) {
        bad_args("kv_match", "rows outside the store");
        return;
    }
    const int64_t rows_min = nq < 1024 ? nq : 1024;
    int64_t ct = nc, qt = nq;
    if (ct * rows_min > MATCH_SCORE_BUDGET) ct = MATCH_SCORE_BUDGET / rows_min;
    if (qt * ct > MATCH_SCORE_BUDGET) qt = MATCH_SCORE_BUDGET / ct;
    size_t tot = 0;
    const size_t o_s = take(&tot, (size_t)(qt * ct) * sizeof(float)), o_bv = take(&tot, (size_t)nq * sizeof(float)),
                 o_bi = take(&tot, (size_t)nq * sizeof(int64_t)), o_sim = take(&tot, (size_t)nq * sizeof(float));
    void *raw;
    char *base = scratch_aligned(c, tot, "kv_match scores", &raw);
    if (!base) return;
    float *S = (float *)(base + o_s), *bestv = (float *)(base + o_bv), *dsim = (float *)(base + o_sim);
    int64_t *besti = (int64_t *)(base + o_bi);
    const int dim = kv->dim;
    const float one = 1.0f, zero = 0.0f;
    int ok = 1;
    for (int64_t qi = 0; ok && qi < nq; qi += qt) {
        const int64_t qn = nq - qi < qt ? nq - qi : qt;
        for (int64_t cj = 0; ok && cj < nc; cj += ct) {
            const int64_t cn = nc - cj < ct ? nc - cj : ct;
            /* column-major: S^T (cn x qn, ld cn) = C^T Q with C, Q stored dim x rows (ld dim) */
            ok = wm_cublas_ok(cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)cn, (int)qn, dim, &one,
                                           kv->match + (size_t)(c0 + cj) * dim, CUDA_R_16BF, dim,
                                           kv->match + (size_t)(q0 + qi) * dim, CUDA_R_16BF, dim, &zero, S,
                                           CUDA_R_32F, (int)cn, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                              "kv_match (cublasGemmEx)") &&
                 wm_cu_ok(wm_cuda_match_argmax(S, cn, (int)qn, (int)cn, (int)(c0 + cj), bestv + qi, besti + qi,
                                               cj == 0, c->stream),
                          "kv_match (argmax)");
        }
    }
    ok = ok && wm_cu_ok(wm_cuda_match_sim(dsim, kv->match, dim, q0, besti, nq, c->stream), "kv_match (sim)");
    if (ok) {
        wm_cu_ok(cudaMemcpyAsync(best, besti, (size_t)nq * sizeof(int64_t), cudaMemcpyDeviceToHost, c->stream),
                 "kv_match (download)");
        wm_cu_ok(cudaMemcpyAsync(sim, dsim, (size_t)nq * sizeof(float), cudaMemcpyDeviceToHost, c->stream),
                 "kv_match (download)");
    }
    wm_cu_scratch_free(c, raw);
    wm_cu_ok(cudaStreamSynchronize(c->stream), "kv_match (sync)");
}

/* ---- kv_merge, kv_compact ---- */

void wm_cu_kv_merge(wm_backend *be, wm_kv *kv, const int64_t *dst, const int64_t *src, const float *a,
                    const float *b, int64_t n) {
    cuda_impl *c = cuda_of(be);
    if (n <= 0) return;
    const size_t bytes = (size_t)n * (2 * sizeof(int64_t) + 2 * sizeof(float));
    char *stage = malloc(bytes);
    if (!stage) {
        wm_note_failure(wm_set_error(WM_ERR_OUT_OF_MEMORY, "kv_merge: out of host memory"));
        return;
    }
    memcpy(stage, dst, (size_t)n * sizeof(int64_t));
    memcpy(stage + (size_t)n * 8, src, (size_t)n * sizeof(int64_t));
    memcpy(stage + (size_t)n * 16, a, (size_t)n * sizeof(float));
    memcpy(stage + (size_t)n * 20, b, (size_t)n * sizeof(float));
    char *d = wm_cu_scratch(c, bytes, "kv_merge indices");
    if (d) {
        /* pageable source: staged by the driver before the call returns, so it can be freed */
        if (wm_cu_ok(cudaMemcpyAsync(d, stage, bytes, cudaMemcpyHostToDevice, c->stream), "kv_merge (upload)"))
            wm_cu_ok(wm_cuda_kv_merge(kv->v, kv->dim, (const int64_t *)d, (const int64_t *)(d + (size_t)n * 8),
                                      (const float *)(d + (size_t)n * 16), (const float *)(d + (size_t)n * 20), n,
                                      c->stream),
                     "kv_merge");
        wm_cu_scratch_free(c, d);
    }
    free(stage);
}

/* One plane: rows keep[first..n) -> rows first..n-1, through a scratch copy (rows may overlap). */
static int compact_plane(cuda_impl *c, void *plane, size_t row_bytes, const int64_t *dkeep, int64_t first, int64_t n,
                         void *tmp) {
    const int64_t m = n - first;
    return wm_cu_ok(wm_cuda_gather_rows(tmp, plane, dkeep, m, row_bytes, c->stream), "kv_compact (gather)") &&
           wm_cu_ok(cudaMemcpyAsync((char *)plane + (size_t)first * row_bytes, tmp, (size_t)m * row_bytes,
                                    cudaMemcpyDeviceToDevice, c->stream),
                    "kv_compact (copy)");
}

void wm_cu_kv_compact(wm_backend *be, wm_kv *kv, const int64_t *keep, int64_t n) {
    cuda_impl *c = cuda_of(be);
    if (n <= 0) return;
    for (int64_t i = 0; i < n; i++)
        if (keep[i] < i || keep[i] >= kv->rows || (i > 0 && keep[i] <= keep[i - 1])) {
            bad_args("kv_compact", "keep[] must be strictly ascending rows of the store");
            return;
        }
    int64_t first = 0;
    while (first < n && keep[first] == first) first++; /* rows already in place */
    if (first == n) return;
    const int64_t m = n - first;
    const size_t row_bytes = (size_t)kv->dim * sizeof(uint16_t);
    size_t tot = 0;
    const size_t o_idx = take(&tot, (size_t)m * sizeof(int64_t)), o_tmp = take(&tot, (size_t)m * row_bytes);
    void *raw;
    char *base = scratch_aligned(c, tot, "kv_compact", &raw);
    if (!base) return;
    int64_t *dkeep = (int64_t *)(base + o_idx);
    void *tmp = base + o_tmp;
    int ok = wm_cu_ok(cudaMemcpyAsync(dkeep, keep + first, (size_t)m * sizeof(int64_t), cudaMemcpyHostToDevice,
                                      c->stream),
                      "kv_compact (upload)");
    ok = ok && compact_plane(c, kv->k, row_bytes, dkeep, first, n, tmp);
    ok = ok && compact_plane(c, kv->v, row_bytes, dkeep, first, n, tmp);
    if (ok && kv->match) ok = compact_plane(c, kv->match, row_bytes, dkeep, first, n, tmp);
    if (ok && kv->bias) compact_plane(c, kv->bias, sizeof(float), dkeep, first, n, tmp);
    wm_cu_scratch_free(c, raw);
    /* keep may be pinned memory, read by the DMA later: wait (compaction is once per chunk) */
    struct cudaPointerAttributes at;
    if (cudaPointerGetAttributes(&at, keep) != cudaSuccess) {
        cudaGetLastError();
        at.type = cudaMemoryTypeHost;
    }
    if (at.type != cudaMemoryTypeUnregistered) cudaStreamSynchronize(c->stream);
}

/* ---- sign-LSH ---- */

wm_lsh *wm_cu_lsh_new(wm_backend *be, int D, int bits, int tables, const float *proj) {
    cuda_impl *c = cuda_of(be);
    if (bits < 1 || bits > 8 || tables < 1 || tables > 4 || (D != 64 && D != 128) || !proj) {
        wm_set_error(WM_ERR_UNSUPPORTED, "lsh_new: D=%d bits=%d tables=%d unsupported (D 64 or 128, bits 1..8, "
                                         "tables 1..4)",
                     D, bits, tables);
        return NULL;
    }
    const int np = bits * tables, npad = np <= 8 ? 8 : np <= 16 ? 16 : 32;
    wm_lsh *l = calloc(1, sizeof *l);
    float *host = calloc((size_t)D * npad, sizeof(float));
    if (!l || !host) {
        free(l), free(host);
        wm_set_error(WM_ERR_OUT_OF_MEMORY, "lsh_new: out of host memory");
        return NULL;
    }
    for (int j = 0; j < np; j++)
        for (int d = 0; d < D; d++) host[(size_t)d * npad + j] = proj[(size_t)j * D + d];
    l->D = D, l->bits = bits, l->tables = tables, l->npad = npad;
    const size_t bytes = (size_t)D * npad * sizeof(float);
    l->proj = wm_cu_malloc(c, bytes, "an LSH projection");
    int ok = l->proj && wm_cu_ok(cudaMemcpyAsync(l->proj, host, bytes, cudaMemcpyHostToDevice, c->stream),
                                 "lsh_new (upload)");
    ok = wm_cu_ok(cudaStreamSynchronize(c->stream), "lsh_new (sync)") && ok;
    free(host);
    if (!ok) {
        if (l->proj) cudaFree(l->proj);
        free(l);
        return NULL;
    }
    c->bytes += bytes;
    return l;
}

void wm_cu_lsh_free(wm_backend *be, wm_lsh *lsh) {
    if (!lsh) return;
    cuda_impl *c = cuda_of(be);
    c->bytes -= (size_t)lsh->D * lsh->npad * sizeof(float);
    cudaFree(lsh->proj);
    free(lsh);
}

/* the hash of nvec head vectors (testing hook: codes are device memory, [nvec][tables]) */
int wm_cu_lsh_hash(wm_backend *be, const wm_lsh *lsh, uint8_t *codes, const void *x, int x_is_f32, int64_t nvec) {
    cuda_impl *c = cuda_of(be);
    return wm_cu_ok(wm_cuda_lsh_hash(codes, x, x_is_f32, nvec, lsh->D, lsh->proj, lsh->npad, lsh->bits, lsh->tables,
                                     c->stream),
                    "lsh hash");
}

/* ---- stage timing (tests and benchmarks; off unless wm_cu_accel_profile(1)) ---- */

#define PROF_MAX 8
static int prof_on, prof_n;
static cudaEvent_t prof_ev[PROF_MAX];

void wm_cu_accel_profile(int on) {
    prof_on = on;
    prof_n = 0;
}
static void prof_mark(cuda_impl *c) {
    if (!prof_on || prof_n >= PROF_MAX) return;
    if (!prof_ev[prof_n] && cudaEventCreate(&prof_ev[prof_n]) != cudaSuccess) {
        cudaGetLastError();
        return;
    }
    cudaEventRecord(prof_ev[prof_n++], c->stream);
}
int wm_cu_accel_profile_read(float *ms, int max) {
    int n = 0;
    if (prof_n > 1 && cudaEventSynchronize(prof_ev[prof_n - 1]) == cudaSuccess)
        for (; n + 1 < prof_n && n < max; n++)
            if (cudaEventElapsedTime(&ms[n], prof_ev[n], prof_ev[n + 1]) != cudaSuccess) ms[n] = -1.0f;
    cudaGetLastError();
    prof_n = 0;
    return n;
}

/* ---- AnnSA ---- */

void wm_cu_attention_annsa(wm_backend *be, float *out, const float *q, const wm_kv *kv, int64_t n_cache, int Mq,
                           int H, int D, float scale, const wm_lsh *lsh) {
    cuda_impl *c = cuda_of(be);
    if (Mq <= 0) return;
    const int64_t Mk64 = n_cache + Mq;
    if ((int64_t)H * D != kv->dim || !lsh || lsh->D != D || n_cache < 0 || Mk64 > kv->rows ||
        Mk64 > INT32_MAX / 2) {
        wm_note_failure(wm_set_error(WM_ERR_INVALID_ARGUMENT,
                                     "attention_annsa: %d heads x %d, %lld cache rows + %d do not fit the K/V rows "
                                     "of %d (%lld rows) or the LSH (D=%d)",
                                     H, D, (long long)n_cache, Mq, kv->dim, (long long)kv->rows, lsh ? lsh->D : -1));
        return;
    }
    const int Mk = (int)Mk64, nc = (int)n_cache, T = lsh->tables;
    const int64_t hd = (int64_t)H * D;
    const int nqb = (Mq + 127) / 128, nkb = (Mk + 127) / 128, nkbf = nc / 128;
    const int qtiles = (Mq + 1023) / 1024, ktiles = (nc + 1023) / 1024;
    if ((int64_t)H * nqb * nkb > INT32_MAX) {
        fail("attention_annsa", "too many block pairs");
        return;
    }
    size_t tot = 0;
    const size_t o_qcode = take(&tot, (size_t)Mq * H * T), o_kcode = take(&tot, (size_t)nc * H * T),
                 o_qcnt = take(&tot, (size_t)H * 256 * qtiles * sizeof(int)),
                 o_kcnt = take(&tot, (size_t)H * 256 * ktiles * sizeof(int)),
                 o_permq = take(&tot, (size_t)H * Mq * sizeof(int)), o_permk = take(&tot, (size_t)H * nc * sizeof(int)),
                 o_qbits = take(&tot, (size_t)H * nqb * T * 32), o_kbits = take(&tot, (size_t)H * nkbf * T * 32),
                 o_cnt = take(&tot, (size_t)H * nqb * sizeof(int)),
                 o_off = take(&tot, ((size_t)H * nqb + 1) * sizeof(int)),
                 o_idx = take(&tot, (size_t)H * nqb * nkb * sizeof(int)),
                 o_qp = take(&tot, (size_t)Mq * hd * sizeof(uint16_t)),
                 o_kp = take(&tot, (size_t)Mk * hd * sizeof(uint16_t)),
                 o_vp = take(&tot, (size_t)Mk * hd * sizeof(uint16_t)),
                 o_bp = take(&tot, kv->bias ? (size_t)H * Mk * sizeof(float) : 0),
                 o_op = take(&tot, (size_t)Mq * hd * sizeof(float));
    void *raw;
    char *base = scratch_aligned(c, tot, "attention_annsa", &raw);
    if (!base) return;
    uint8_t *qcode = (uint8_t *)(base + o_qcode), *kcode = (uint8_t *)(base + o_kcode);
    int *permq = (int *)(base + o_permq), *permk = (int *)(base + o_permk);
    uint32_t *qbits = (uint32_t *)(base + o_qbits), *kbits = (uint32_t *)(base + o_kbits);
    int *kb_off = (int *)(base + o_off), *kb_idx = (int *)(base + o_idx);
    uint16_t *qp = (uint16_t *)(base + o_qp), *kp = (uint16_t *)(base + o_kp), *vp = (uint16_t *)(base + o_vp);
    float *bp = kv->bias ? (float *)(base + o_bp) : NULL, *op = (float *)(base + o_op);
    cudaStream_t s = c->stream;
    if (prof_on) prof_n = 0;
    prof_mark(c);

    /* buckets: queries rounded to bf16 as the attention kernel sees them, cache keys as stored */
    int ok = wm_cu_ok(wm_cuda_lsh_hash(qcode, q, 1, (int64_t)Mq * H, D, lsh->proj, lsh->npad, lsh->bits, T, s),
                      "attention_annsa (hash q)");
    if (ok && nc > 0)
        ok = wm_cu_ok(wm_cuda_lsh_hash(kcode, kv->k, 0, (int64_t)nc * H, D, lsh->proj, lsh->npad, lsh->bits, T, s),
                      "attention_annsa (hash k)");
    prof_mark(c);
    /* per-head orders by (table-0 bucket, row) */
    if (ok) {
        wm_ann_sort_set sets[2] = {{qcode, Mq, T, (int *)(base + o_qcnt), permq},
                                   {kcode, nc, T, (int *)(base + o_kcnt), permk}};
        ok = wm_cu_ok(wm_cuda_ann_sort(sets, nc > 0 ? 2 : 1, H, s), "attention_annsa (sort)");
    }
    prof_mark(c);
    /* bucket sets per block, then the list of key blocks per query block */
    if (ok) {
        wm_ann_bits_set bs[2] = {{permq, qcode, Mq, nqb, T, qbits}, {permk, kcode, nc, nkbf, T, kbits}};
        ok = wm_cu_ok(wm_cuda_ann_block_bits(bs, nkbf > 0 ? 2 : 1, H, s), "attention_annsa (bitsets)") &&
             wm_cu_ok(wm_cuda_ann_csr(kb_off, kb_idx, (int *)(base + o_cnt), qbits, kbits, H, nqb, nkb, nkbf, T,
                                      c->accel_counters, s),
                      "attention_annsa (block list)");
    }
    prof_mark(c);
    /* the permuted views */
    ok = ok && wm_cu_ok(wm_cuda_ann_gather_q(qp, q, permq, Mq, H, D, s), "attention_annsa (gather q)") &&
         wm_cu_ok(wm_cuda_ann_gather_kv(kp, vp, bp, kv->k, kv->v, kv->bias, permk, nc, Mk, H, D, s),
                  "attention_annsa (gather k, v)");
    prof_mark(c);
    if (ok) {
        wm_fa_args a;
        memset(&a, 0, sizeof a);
        a.q = qp, a.ldq = hd;
        a.k = kp, a.v = vp, a.ldkv = hd;
        a.out = op, a.ldo = hd;
        a.Mq = Mq, a.Mk = Mk, a.H = H, a.D = D;
        a.scale = scale;
        a.key_bias = bp, a.bias_head_stride = Mk;
        a.kb_offsets = kb_off, a.kb_indices = kb_idx;
        if (wm_flash_attn(&a, s) != 0) {
            fail("attention_annsa", wm_flash_attn_error());
            ok = 0;
        }
    }
    prof_mark(c);
    ok = ok && wm_cu_ok(wm_cuda_ann_scatter_out(out, op, permq, Mq, H, D, s), "attention_annsa (scatter)");
    prof_mark(c);
    wm_cu_scratch_free(c, raw);
}

/* ---- AnnCA ---- */

void wm_cu_attention_annca(wm_backend *be, float *out, const float *q, const wm_kv *kv, int64_t n_rows, int Mq,
                           int H, int D, float scale, int group, const wm_lsh *lsh) {
    cuda_impl *c = cuda_of(be);
    if (Mq <= 0) return;
    if ((int64_t)H * D != kv->dim || !lsh || lsh->D != D || group < 1 || n_rows < 0 || n_rows > kv->rows ||
        n_rows > INT32_MAX / 2) {
        wm_note_failure(wm_set_error(WM_ERR_INVALID_ARGUMENT,
                                     "attention_annca: %d heads x %d, %lld rows, group %d do not fit the K/V rows of "
                                     "%d (%lld rows) or the LSH (D=%d)",
                                     H, D, (long long)n_rows, group, kv->dim, (long long)kv->rows, lsh ? lsh->D : -1));
        return;
    }
    const int64_t hd = (int64_t)H * D;
    cudaStream_t s = c->stream;
    if (n_rows == 0) { /* no keys: zero rows */
        wm_cu_ok(wm_cuda_fill(out, 0.0f, (size_t)Mq * hd, s), "attention_annca (no keys)");
        return;
    }
    const int nr = (int)n_rows, T = lsh->tables;
    const int F = (Mq + group - 1) / group;
    const int64_t gp = ((int64_t)group + 127) / 128 * 128, np = ((int64_t)nr + 127) / 128 * 128;
    const int64_t Mqp = F * gp, Mkp = F * np, nqb = Mqp / 128, kpg = np / 128;
    if (Mqp > INT32_MAX || Mkp > INT32_MAX || H * nqb * kpg > INT32_MAX) {
        fail("attention_annca", "shape too large");
        return;
    }
    const int direct = gp == group && (int64_t)F * group == Mq; /* no padded query rows: write out directly */
    size_t tot = 0;
    const size_t o_qcode = take(&tot, (size_t)Mq * H * T), o_kcode = take(&tot, (size_t)nr * H * T),
                 o_sel = take(&tot, (size_t)F * H * nr * sizeof(int)), o_cnt = take(&tot, (size_t)F * H * sizeof(int)),
                 o_off = take(&tot, ((size_t)H * nqb + 1) * sizeof(int)),
                 o_idx = take(&tot, (size_t)H * nqb * kpg * sizeof(int)),
                 o_qg = take(&tot, (size_t)Mqp * hd * sizeof(uint16_t)),
                 o_kg = take(&tot, (size_t)Mkp * hd * sizeof(uint16_t)),
                 o_vg = take(&tot, (size_t)Mkp * hd * sizeof(uint16_t)),
                 o_bg = take(&tot, (size_t)H * Mkp * sizeof(float)),
                 o_og = take(&tot, direct ? 0 : (size_t)Mqp * hd * sizeof(float));
    void *raw;
    char *base = scratch_aligned(c, tot, "attention_annca", &raw);
    if (!base) return;
    uint8_t *qcode = (uint8_t *)(base + o_qcode), *kcode = (uint8_t *)(base + o_kcode);
    int *sel = (int *)(base + o_sel), *cnt = (int *)(base + o_cnt);
    int *kb_off = (int *)(base + o_off), *kb_idx = (int *)(base + o_idx);
    uint16_t *qg = (uint16_t *)(base + o_qg), *kg = (uint16_t *)(base + o_kg), *vg = (uint16_t *)(base + o_vg);
    float *bg = (float *)(base + o_bg), *og = direct ? out : (float *)(base + o_og);

    int ok = wm_cu_ok(wm_cuda_lsh_hash(qcode, q, 1, (int64_t)Mq * H, D, lsh->proj, lsh->npad, lsh->bits, T, s),
                      "attention_annca (hash q)") &&
             wm_cu_ok(wm_cuda_lsh_hash(kcode, kv->k, 0, (int64_t)nr * H, D, lsh->proj, lsh->npad, lsh->bits, T, s),
                      "attention_annca (hash k)") &&
             wm_cu_ok(wm_cuda_annca_select(kg, vg, bg, cnt, sel, kv->k, kv->v, kv->bias, qcode, kcode, Mq, group, F,
                                           nr, (int)np, H, D, T, c->accel_counters, s),
                      "attention_annca (select)") &&
             wm_cu_ok(wm_cuda_annca_pad_q(qg, q, Mq, group, (int)gp, F, (int)hd, s), "attention_annca (q)") &&
             wm_cu_ok(wm_cuda_annca_csr(kb_off, kb_idx, cnt, F, H, (int)gp, (int)np, s), "attention_annca (list)");
    if (ok) {
        wm_fa_args a;
        memset(&a, 0, sizeof a);
        a.q = qg, a.ldq = hd;
        a.k = kg, a.v = vg, a.ldkv = hd;
        a.out = og, a.ldo = hd;
        a.Mq = (int)Mqp, a.Mk = (int)Mkp, a.H = H, a.D = D;
        a.scale = scale;
        a.key_bias = bg, a.bias_head_stride = Mkp;
        a.kb_offsets = kb_off, a.kb_indices = kb_idx;
        if (wm_flash_attn(&a, s) != 0) {
            fail("attention_annca", wm_flash_attn_error());
            ok = 0;
        }
    }
    if (ok && !direct)
        wm_cu_ok(wm_cuda_annca_unpad_out(out, og, Mq, group, (int)gp, (int)hd, s), "attention_annca (out)");
    wm_cu_scratch_free(c, raw);
}

/* ---- density counters ---- */

void wm_cu_lsh_take_counts(wm_backend *be, double out[4]) {
    cuda_impl *c = cuda_of(be);
    unsigned long long h[4] = {0, 0, 0, 0};
    if (c->accel_counters &&
        wm_cu_ok(cudaMemcpyAsync(h, c->accel_counters, sizeof h, cudaMemcpyDeviceToHost, c->stream),
                 "lsh_take_counts") &&
        wm_cu_ok(cudaStreamSynchronize(c->stream), "lsh_take_counts (sync)"))
        wm_cu_ok(cudaMemsetAsync(c->accel_counters, 0, sizeof h, c->stream), "lsh_take_counts (reset)");
    for (int i = 0; i < 4; i++) out[i] = (double)h[i];
}
