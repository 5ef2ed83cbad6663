/* accel.c - TempCache, AnnSA and AnnCA on the CPU (docs/ACCEL.md; the contracts are in backend.h).
 *
 * This is the readable reference the CUDA kernels are checked against, so it favours the plain form:
 *  - the match plane is a second [rows, dim] fp32 array next to K and V;
 *  - kv_match asks FAISS (8-bit scalar quantizer, inner product) for a few candidates per query row
 *    and re-ranks them by the exact fp32 dot product;
 *  - buckets come from FAISS's IndexLSH with our projection in place of its random rotation;
 *  - the sparse attentions are attention.c's one implementation with a mask (the keys a query may
 *    not see at -inf), so a pattern that attends everything reproduces `attention` bit for bit. */
#include "common.h"
#include "cpu_ops.h"
#include "faiss_shim.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SPARSE_BLOCK 128 /* AnnSA's query and key blocks (the CUDA kernel's tile) */
#define MATCH_K      8   /* FAISS candidates per query row that kv_match re-ranks exactly */
#define PAR_MIN      65536

struct wm_lsh {
    int D, bits, tables;
    float *proj; /* [tables*bits, D] host copy */
    wm_faiss_lsh *faiss;
};

/* ---- the match plane ---- */

static int ensure_match(wm_backend *be, wm_kv *kv) {
    if (kv->match) return 1;
    kv->match = be->alloc(be, (size_t)kv->rows * (size_t)kv->dim);
    if (!kv->match) {
        wm_note_failure(WM_ERR_OUT_OF_MEMORY);
        return 0;
    }
    memset(kv->match, 0, (size_t)kv->rows * (size_t)kv->dim * sizeof(float));
    return 1;
}

void wm_cpu_kv_write_match(wm_backend *be, wm_kv *kv, int64_t row, const float *x, int64_t n) {
    if (n <= 0 || !ensure_match(be, kv)) return;
    const int dim = kv->dim;
    #pragma omp parallel for schedule(static) if ((size_t)n * dim >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        const float *xi = x + i * dim;
        float *mi = kv->match + (row + i) * dim;
        double s = 0;
        for (int c = 0; c < dim; c++) s += (double)xi[c] * xi[c];
        const double inv = s > 0 ? 1.0 / sqrt(s) : 0.0; /* a zero row stays zero */
        for (int c = 0; c < dim; c++) mi[c] = (float)(xi[c] * inv);
    }
}

void wm_cpu_kv_read_match(wm_backend *be, const wm_kv *kv, float *host, int64_t row, int64_t n) {
    if (n <= 0) return;
    const size_t bytes = (size_t)n * (size_t)kv->dim * sizeof(float);
    if (kv->match)
        memcpy(host, kv->match + row * kv->dim, bytes);
    else
        memset(host, 0, bytes);
}

void wm_cpu_kv_load_match(wm_backend *be, wm_kv *kv, const float *host, int64_t row, int64_t n) {
    if (n <= 0 || !ensure_match(be, kv)) return;
    memcpy(kv->match + row * kv->dim, host, (size_t)n * (size_t)kv->dim * sizeof(float));
}

/* fp32 dot product, accumulated in order (the value kv_match reports as the similarity) */
static float dot_f32(const float *a, const float *b, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

void wm_cpu_kv_match(wm_backend *be, const wm_kv *kv, int64_t q0, int64_t nq, int64_t c0, int64_t nc,
                     int64_t *best, float *sim) {
    if (nq <= 0) return;
    for (int64_t i = 0; i < nq; i++) best[i] = -1, sim[i] = 0.0f;
    if (nc <= 0) return;
    const int dim = kv->dim;
    if (!kv->match) { /* no plane: every match row is zero, every candidate ties at 0 */
        for (int64_t i = 0; i < nq; i++) best[i] = c0;
        return;
    }
    const int k = nc < MATCH_K ? (int)nc : MATCH_K;
    int64_t *labels = malloc((size_t)nq * (size_t)k * sizeof *labels);
    if (!labels) {
        wm_note_failure(
            wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of memory in kv_match (%lld rows)", (long long)nq));
        return;
    }
    char err[512];
    const float *cand = kv->match + c0 * dim;
    int rc =
        wm_faiss_sq8_search(dim, nc, cand, dim, nq, kv->match + q0 * dim, dim, k, labels, err, sizeof err);
    if (rc != WM_FAISS_OK) {
        wm_note_failure(wm_set_error(rc == WM_FAISS_NO_MEMORY ? WM_ERR_OUT_OF_MEMORY : WM_ERR_INTERNAL,
                                     "kv_match: %s", err));
        free(labels);
        return;
    }
    /* exact re-rank of the candidates; ties go to the lower row */
    #pragma omp parallel for schedule(static) if ((size_t)nq * k * dim >= PAR_MIN)
    for (int64_t i = 0; i < nq; i++) {
        const float *qi = kv->match + (q0 + i) * dim;
        int64_t bj = -1;
        float bs = -INFINITY;
        for (int c = 0; c < k; c++) {
            const int64_t l = labels[i * k + c];
            if (l < 0 || l >= nc) continue;
            const float s = dot_f32(qi, cand + l * dim, dim);
            if (bj < 0 || s > bs || (s == bs && l < bj)) bj = l, bs = s;
        }
        if (bj >= 0) best[i] = c0 + bj, sim[i] = bs;
    }
    free(labels);
}

/* ---- merge and compaction ---- */

void wm_cpu_kv_merge(wm_backend *be, wm_kv *kv, const int64_t *dst, const int64_t *src, const float *a,
                     const float *b, int64_t n) {
    const int dim = kv->dim;
    /* no dst repeats and no row is both: the rows are independent */
    #pragma omp parallel for schedule(static) if ((size_t)n * dim >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float *vd = kv->v + dst[i] * dim;
        const float *vs = kv->v + src[i] * dim;
        const float ai = a[i], bi = b[i];
        for (int c = 0; c < dim; c++) vd[c] = ai * vd[c] + bi * vs[c];
    }
}

void wm_cpu_kv_compact(wm_backend *be, wm_kv *kv, const int64_t *keep, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (keep[i] < i || keep[i] >= kv->rows || (i > 0 && keep[i] <= keep[i - 1])) {
            wm_note_failure(wm_set_error(WM_ERR_INVALID_ARGUMENT,
                                         "kv_compact: keep[] must be strictly ascending rows of the store "
                                         "(keep[%lld] = %lld)",
                                         (long long)i, (long long)keep[i]));
            return;
        }
    /* keep[i] >= i: copying in order never overwrites a row still to be read */
    const size_t row_bytes = (size_t)kv->dim * sizeof(float);
    for (int64_t i = 0; i < n; i++) {
        const int64_t r = keep[i];
        if (r == i) continue;
        memcpy(kv->k + i * kv->dim, kv->k + r * kv->dim, row_bytes);
        memcpy(kv->v + i * kv->dim, kv->v + r * kv->dim, row_bytes);
        if (kv->match) memcpy(kv->match + i * kv->dim, kv->match + r * kv->dim, row_bytes);
        if (kv->bias) kv->bias[i] = kv->bias[r];
    }
}

/* ---- sign-LSH ---- */

wm_lsh *wm_cpu_lsh_new(wm_backend *be, int D, int bits, int tables, const float *proj) {
    if (D <= 0 || bits < 1 || bits > 8 || tables < 1 || tables > 4 || !proj) {
        wm_set_error(
            WM_ERR_INVALID_ARGUMENT,
            "lsh_new: need D > 0, bits 1..8, tables 1..4 and a projection (got D=%d bits=%d tables=%d%s)", D,
            bits, tables, proj ? "" : ", proj NULL");
        return NULL;
    }
    wm_lsh *lsh = calloc(1, sizeof *lsh);
    const size_t np = (size_t)bits * tables * D;
    if (lsh) lsh->proj = malloc(np * sizeof(float));
    if (!lsh || !lsh->proj) {
        if (lsh) free(lsh);
        wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of memory in lsh_new");
        return NULL;
    }
    memcpy(lsh->proj, proj, np * sizeof(float));
    lsh->D = D, lsh->bits = bits, lsh->tables = tables;
    char err[512];
    int rc = wm_faiss_lsh_new(D, bits * tables, proj, &lsh->faiss, err, sizeof err);
    if (rc != WM_FAISS_OK) {
        wm_set_error(rc == WM_FAISS_NO_MEMORY ? WM_ERR_OUT_OF_MEMORY : WM_ERR_INTERNAL, "lsh_new: %s", err);
        free(lsh->proj);
        free(lsh);
        return NULL;
    }
    return lsh;
}

void wm_cpu_lsh_free(wm_backend *be, wm_lsh *lsh) {
    if (!lsh) return;
    wm_faiss_lsh_free(lsh->faiss);
    free(lsh->proj);
    free(lsh);
}

wm_status wm_cpu_lsh_buckets(const wm_lsh *lsh, int64_t n, const float *x, int64_t ld, uint8_t *buckets) {
    if (n <= 0) return WM_OK;
    const int bits = lsh->bits, T = lsh->tables, cs = (bits * T + 7) / 8;
    uint8_t *codes = malloc((size_t)n * cs);
    if (!codes) {
        return wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of memory hashing %lld vectors", (long long)n);
    }
    char err[512];
    int rc = wm_faiss_lsh_codes(lsh->faiss, n, x, ld, codes, err, sizeof err);
    if (rc != WM_FAISS_OK) {
        free(codes);
        return wm_set_error(rc == WM_FAISS_NO_MEMORY ? WM_ERR_OUT_OF_MEMORY : WM_ERR_INTERNAL, "LSH: %s",
                            err);
    }
    /* FAISS packs bit j of a code into byte j/8, bit j%8; table t owns bits t*bits .. t*bits+bits-1 */
    for (int64_t i = 0; i < n; i++)
        for (int t = 0; t < T; t++) {
            unsigned b = 0;
            for (int bb = 0; bb < bits; bb++) {
                const int j = t * bits + bb;
                b |= (unsigned)((codes[i * cs + j / 8] >> (j % 8)) & 1) << bb;
            }
            buckets[i * T + t] = (uint8_t)b;
        }
    free(codes);
    return WM_OK;
}

/* ---- density counters ---- */

static pthread_mutex_t counts_lock = PTHREAD_MUTEX_INITIALIZER;

static void add_counts(wm_backend *be, double sa_att, double sa_tot, double ca_sel, double ca_tot) {
    wm_cpu_lsh_counts *c = wm_cpu_counts(be);
    pthread_mutex_lock(&counts_lock);
    c->sa_attended += sa_att, c->sa_total += sa_tot, c->ca_selected += ca_sel, c->ca_total += ca_tot;
    pthread_mutex_unlock(&counts_lock);
}

void wm_cpu_lsh_take_counts(wm_backend *be, double out[4]) {
    wm_cpu_lsh_counts *c = wm_cpu_counts(be);
    pthread_mutex_lock(&counts_lock);
    out[0] = c->sa_attended, out[1] = c->sa_total, out[2] = c->ca_selected, out[3] = c->ca_total;
    memset(c, 0, sizeof *c);
    pthread_mutex_unlock(&counts_lock);
}

/* ---- masked dense attention ---- */

/* 256-bit set of buckets */
typedef struct bset {
    uint64_t w[4];
} bset;
static void bset_add(bset *s, unsigned b) { s->w[b >> 6] |= (uint64_t)1 << (b & 63); }
static int bset_has(const bset *s, unsigned b) { return (int)((s->w[b >> 6] >> (b & 63)) & 1); }
static int bset_meets(const bset *a, const bset *b) {
    return ((a->w[0] & b->w[0]) | (a->w[1] & b->w[1]) | (a->w[2] & b->w[2]) | (a->w[3] & b->w[3])) != 0;
}

/* positions of rows [0, n) when stably sorted by bucket: pos[r] (counting sort over 256 buckets);
 * bucket of row r is bk[(r*H + h)*T] (table 0 of head h) */
static void bucket_order(const uint8_t *bk, int64_t n, int H, int h, int T, int32_t *pos) {
    int64_t start[257] = {0};
    for (int64_t r = 0; r < n; r++) start[bk[(r * H + h) * T] + 1]++;
    for (int b = 0; b < 256; b++) start[b + 1] += start[b];
    for (int64_t r = 0; r < n; r++) pos[r] = (int32_t)start[bk[(r * H + h) * T]]++;
}

typedef struct annsa_ctx {
    const int32_t *kblk; /* [H, n_rows] key block of each kv row */
    const int32_t *qblk; /* [H, Mq] query block of each query */
    const uint8_t *att;  /* [H, n_qb, n_kb] 1 = attended */
    int n_rows, Mq, n_qb, n_kb;
} annsa_ctx;

static void annsa_mask(const void *ctxp, int h, int i, float *row, int Mk) {
    const annsa_ctx *c = ctxp;
    const uint8_t *a = c->att + ((size_t)h * c->n_qb + c->qblk[(size_t)h * c->Mq + i]) * c->n_kb;
    const int32_t *kb = c->kblk + (size_t)h * c->n_rows;
    for (int j = 0; j < Mk; j++)
        if (!a[kb[j]]) row[j] = -INFINITY;
}

/* Buckets of nk key rows and Mq query rows, every head (H per row); notes a failure and returns 0. */
static int hash_keys_queries(const wm_lsh *lsh, const float *k, int64_t nk, const float *q, int Mq, int H, int D,
                             uint8_t *kbk, uint8_t *qbk) {
    wm_status st = wm_cpu_lsh_buckets(lsh, nk * H, k, D, kbk);
    if (st == WM_OK) st = wm_cpu_lsh_buckets(lsh, (int64_t)Mq * H, q, D, qbk);
    if (st != WM_OK) wm_note_failure(st);
    return st == WM_OK;
}

void wm_cpu_attention_annsa(wm_backend *be, float *out, const float *q, const wm_kv *kv, int64_t n_cache,
                            int Mq, int H, int D, float scale, const wm_lsh *lsh) {
    if (Mq <= 0) return;
    if (!lsh || lsh->D != D || kv->dim != H * D || n_cache < 0 || n_cache + Mq > kv->rows) {
        wm_note_failure(wm_set_error(WM_ERR_INVALID_ARGUMENT,
                                     "attention_annsa: bad arguments (LSH D=%d, D=%d, H=%d, store %lld x %d, "
                                     "n_cache=%lld, Mq=%d)",
                                     lsh ? lsh->D : -1, D, H, (long long)kv->rows, kv->dim,
                                     (long long)n_cache, Mq));
        return;
    }
    const int T = lsh->tables, B = SPARSE_BLOCK;
    const int n_rows = (int)(n_cache + Mq), nc = (int)n_cache;
    const int n_qb = (Mq + B - 1) / B, n_kb = (n_rows + B - 1) / B;
    /* buckets of every head vector: rows of H*D are H contiguous head vectors of D */
    uint8_t *kbk = malloc((size_t)(nc > 0 ? nc : 1) * H * T), *qbk = malloc((size_t)Mq * H * T);
    int32_t *kblk = malloc((size_t)H * n_rows * sizeof(int32_t)),
            *qblk = malloc((size_t)H * Mq * sizeof(int32_t));
    uint8_t *att = calloc((size_t)H * n_qb * n_kb, 1);
    bset *kset = malloc((size_t)n_kb * T * sizeof(bset)), *qset = malloc((size_t)n_qb * T * sizeof(bset));
    if (!kbk || !qbk || !kblk || !qblk || !att || !kset || !qset) {
        wm_note_failure(
            wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of memory in attention_annsa (%d rows)", n_rows));
        goto done;
    }
    if (!hash_keys_queries(lsh, kv->k, nc, q, Mq, H, D, kbk, qbk)) goto done;
    double attended = 0;
    for (int h = 0; h < H; h++) {
        int32_t *kb = kblk + (size_t)h * n_rows, *qb = qblk + (size_t)h * Mq;
        /* order: cache rows by (table-0 bucket, row), then the chunk rows; blocks of B positions */
        bucket_order(kbk, nc, H, h, T, kb);
        for (int r = 0; r < nc; r++) kb[r] /= B;
        for (int r = nc; r < n_rows; r++) kb[r] = r / B;
        bucket_order(qbk, Mq, H, h, T, qb);
        for (int i = 0; i < Mq; i++) qb[i] /= B;
        /* the buckets present in each block, per table (the chunk's keys are not hashed) */
        memset(kset, 0, (size_t)n_kb * T * sizeof(bset));
        memset(qset, 0, (size_t)n_qb * T * sizeof(bset));
        for (int r = 0; r < nc; r++)
            for (int t = 0; t < T; t++) bset_add(&kset[kb[r] * T + t], kbk[((size_t)r * H + h) * T + t]);
        for (int i = 0; i < Mq; i++)
            for (int t = 0; t < T; t++) bset_add(&qset[qb[i] * T + t], qbk[((size_t)i * H + h) * T + t]);
        for (int a = 0; a < n_qb; a++)
            for (int b = 0; b < n_kb; b++) {
                int on = (int64_t)(b + 1) * B > nc; /* the block holds a chunk row */
                for (int t = 0; t < T && !on; t++) on = bset_meets(&qset[a * T + t], &kset[b * T + t]);
                att[((size_t)h * n_qb + a) * n_kb + b] = (uint8_t)on;
                attended += on;
            }
    }
    annsa_ctx ctx = {kblk, qblk, att, n_rows, Mq, n_qb, n_kb};
    wm_cpu_attention_masked(out, q, kv, n_rows, Mq, H, D, scale, annsa_mask, &ctx);
    add_counts(be, attended, (double)H * n_qb * n_kb, 0, 0);
done:
    free(kbk), free(qbk), free(kblk), free(qblk), free(att), free(kset), free(qset);
}

typedef struct annca_ctx {
    const uint8_t *sel; /* [groups, H, n_rows] 1 = the key takes part */
    int H, n_rows, group;
} annca_ctx;

static void annca_mask(const void *ctxp, int h, int i, float *row, int Mk) {
    const annca_ctx *c = ctxp;
    const uint8_t *s = c->sel + ((size_t)(i / c->group) * c->H + h) * c->n_rows;
    for (int j = 0; j < Mk; j++)
        if (!s[j]) row[j] = -INFINITY;
}

void wm_cpu_attention_annca(wm_backend *be, float *out, const float *q, const wm_kv *kv, int64_t n_rows,
                            int Mq, int H, int D, float scale, int group, const wm_lsh *lsh) {
    if (Mq <= 0) return;
    if (!lsh || lsh->D != D || kv->dim != H * D || group <= 0 || n_rows < 0 || n_rows > kv->rows) {
        wm_note_failure(wm_set_error(WM_ERR_INVALID_ARGUMENT,
                                     "attention_annca: bad arguments (LSH D=%d, D=%d, H=%d, store %lld x %d, "
                                     "n_rows=%lld, group=%d)",
                                     lsh ? lsh->D : -1, D, H, (long long)kv->rows, kv->dim, (long long)n_rows,
                                     group));
        return;
    }
    const int T = lsh->tables, nr = (int)n_rows, G = (Mq + group - 1) / group;
    uint8_t *kbk = malloc((size_t)(nr > 0 ? nr : 1) * H * T), *qbk = malloc((size_t)Mq * H * T);
    uint8_t *sel = malloc((size_t)G * H * (nr > 0 ? nr : 1));
    if (!kbk || !qbk || !sel) {
        wm_note_failure(wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of memory in attention_annca (%d rows)", nr));
        goto done;
    }
    if (!hash_keys_queries(lsh, kv->k, nr, q, Mq, H, D, kbk, qbk)) goto done;
    double selected = 0;
    for (int g = 0; g < G; g++)
        for (int h = 0; h < H; h++) {
            bset qs[4] = {{{0}}};
            const int i1 = (g + 1) * group < Mq ? (g + 1) * group : Mq;
            for (int i = g * group; i < i1; i++)
                for (int t = 0; t < T; t++) bset_add(&qs[t], qbk[((size_t)i * H + h) * T + t]);
            uint8_t *s = sel + ((size_t)g * H + h) * nr;
            for (int j = 0; j < nr; j++) {
                int on = 0;
                for (int t = 0; t < T && !on; t++) on = bset_has(&qs[t], kbk[((size_t)j * H + h) * T + t]);
                s[j] = (uint8_t)on;
                selected += on;
            }
        }
    annca_ctx ctx = {sel, H, nr, group};
    wm_cpu_attention_masked(out, q, kv, nr, Mq, H, D, scale, annca_mask, &ctx);
    add_counts(be, 0, 0, selected, (double)G * H * nr);
done:
    free(kbk), free(qbk), free(sel);
}
