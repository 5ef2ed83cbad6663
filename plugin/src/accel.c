/* accel.c - TempCache / AnnSA / AnnCA on the session side (accel.h, docs/ACCEL.md). */
#include "accel.h"

#include "engine.h"
#include "rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Philox streams of the LSH projections (far from the noise streams 256 * chunk + step). */
#define LSH_STREAM_SA 0x4C53480000000001ull
#define LSH_STREAM_CA 0x4C53480000000002ull
#define PROBE_MAX 256

void wm_accel_defaults(wm_accel_params *a) {
    memset(a, 0, sizeof *a);
    a->tc_threshold = 0.95f;
    a->tc_budget_tokens = 0;
    a->sa_bits = 1; /* the shipped game's recall >= 0.9 needs it (docs/ACCEL_QUALITY.md) */
    a->sa_tables = 1;
    a->sa_dense_steps = 0.3f;
    a->sa_layers = 0;
    a->ca_bits = 2; /* recall ~0.99: the 16-token game prompt loses its colours below that */
    a->ca_tables = 2;
    a->ca_min_tokens = 64; /* Wan's 512-token T5 context: sparse; the game's 16-token prompt: dense */
}

static wm_status check_lsh(const char *name, int bits, int tables) {
    if (bits < 1 || bits > 8) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "%s_bits %d: need 1..8", name, bits);
    if (tables < 1 || tables > 4) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "%s_tables %d: need 1..4", name, tables);
    return WM_OK;
}

/* Hash tables with projections drawn from the session seed (the same on every backend). */
static wm_lsh *make_lsh(wm_session *s, int bits, int tables, uint64_t stream) {
    const int HD = s->m->cfg.dim / s->m->cfg.num_heads;
    float *proj = malloc((size_t)bits * tables * HD * sizeof(float));
    if (!proj) {
        wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of memory for LSH projections");
        return NULL;
    }
    wm_normal_fill(proj, (size_t)bits * tables * HD, s->seed, stream, 0);
    wm_lsh *l = s->be->lsh_new(s->be, HD, bits, tables, proj);
    free(proj);
    return l;
}

wm_status wm_accel_apply(wm_session *s, const wm_accel_params *a) {
    if (!a) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "accel params: NULL");
    wm_backend *be = s->be;
    const wm_config *c = &s->m->cfg;
    wm_status st;
    if (a->annsa && (st = check_lsh("sa", a->sa_bits, a->sa_tables)) != WM_OK) return st;
    if (a->annca && (st = check_lsh("ca", a->ca_bits, a->ca_tables)) != WM_OK) return st;
    if (a->annsa && !(a->sa_dense_steps >= 0.0f && a->sa_dense_steps <= 1.0f))
        return wm_set_error(WM_ERR_INVALID_ARGUMENT, "sa_dense_steps %g: need a fraction in [0, 1]", a->sa_dense_steps);
    if (a->ca_min_tokens < 0)
        return wm_set_error(WM_ERR_INVALID_ARGUMENT, "ca_min_tokens %d < 0", a->ca_min_tokens);
    if (a->recall_probe < 0 || a->recall_probe > PROBE_MAX)
        return wm_set_error(WM_ERR_INVALID_ARGUMENT, "recall_probe %d: need 0..%d sampled queries", a->recall_probe, PROBE_MAX);
    if ((a->tempcache || a->annsa || a->annca) && !be->lsh_new)
        return wm_set_error(WM_ERR_UNSUPPORTED, "the %s backend has no acceleration ops", be->name);
    if ((a->annsa || a->annca) && (c->dim / c->num_heads) % 8)
        return wm_set_error(WM_ERR_UNSUPPORTED, "AnnSA/AnnCA need a head dim that is a multiple of 8 (%d)", c->dim / c->num_heads);
    if (a->tempcache && a->tc_budget_tokens < 0)
        return wm_set_error(WM_ERR_INVALID_ARGUMENT, "tc_budget_tokens %lld < 0", (long long)a->tc_budget_tokens);
    /* TempCache's settings are checked against the cache before anything changes */
    const int tc_was = s->cache.tc_on;
    const float thr_was = s->cache.tc_threshold;
    const int64_t budget_was = s->cache.tc_budget;
    if ((st = wm_cache_set_tempcache(&s->cache, a->tempcache, a->tc_threshold, a->tc_budget_tokens)) != WM_OK) return st;
    /* new tables only when their shape changes (the projections depend on the seed alone) */
    wm_lsh *sa = s->sa_lsh, *ca = s->ca_lsh;
    int new_sa = a->annsa && (!sa || s->accel.sa_bits != a->sa_bits || s->accel.sa_tables != a->sa_tables);
    int new_ca = a->annca && (!ca || s->accel.ca_bits != a->ca_bits || s->accel.ca_tables != a->ca_tables);
    wm_lsh *nsa = new_sa ? make_lsh(s, a->sa_bits, a->sa_tables, LSH_STREAM_SA) : NULL;
    wm_lsh *nca = new_ca ? make_lsh(s, a->ca_bits, a->ca_tables, LSH_STREAM_CA) : NULL;
    if ((new_sa && !nsa) || (new_ca && !nca)) {
        if (nsa) be->lsh_free(be, nsa);
        if (nca) be->lsh_free(be, nca);
        s->cache.tc_on = tc_was, s->cache.tc_threshold = thr_was, s->cache.tc_budget = budget_was;
        return WM_ERR_OUT_OF_MEMORY; /* message set by lsh_new */
    }
    if (new_sa || (!a->annsa && sa)) {
        if (sa) be->lsh_free(be, sa);
        s->sa_lsh = nsa;
    }
    if (new_ca || (!a->annca && ca)) {
        if (ca) be->lsh_free(be, ca);
        s->ca_lsh = nca;
    }
    s->accel = *a;
    return WM_OK;
}

void wm_accel_free(wm_session *s) {
    wm_backend *be = s->be;
    if (s->sa_lsh) be->lsh_free(be, s->sa_lsh);
    if (s->ca_lsh) be->lsh_free(be, s->ca_lsh);
    s->sa_lsh = s->ca_lsh = NULL;
}

/* ---- recall probe: sampled queries against dense attention, on the host ---- */

/* bucket of head vector x in table t: the backends' sign rule (backend.h) */
static int bucket(const float *proj, int bits, int t, const float *x, int D) {
    int b = 0;
    for (int i = 0; i < bits; i++) {
        const float *p = proj + (size_t)(t * bits + i) * D;
        float d = 0;
        for (int j = 0; j < D; j++) d += p[j] * x[j];
        b |= (d >= 0.0f) << i;
    }
    return b;
}

/* bf16 round-to-nearest-even: CUDA hashes the bf16 queries its attention sees */
static float bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}

/* AnnSA's pattern for one head, rebuilt from the definition (backend.h): per key row its block in
 * the head's order, per (block, table) the bucket sets of the sorted queries and keys. */
typedef struct sa_pattern {
    int64_t *kpos;            /* [nk] position of key row j in the head's key order */
    int *qpos;                /* [Mq] position of query i in the head's query order */
    uint64_t *kset, *qset;    /* [blocks][tables][4] 256-bit bucket sets */
    int nkb, nqb;
} sa_pattern;

static int cmp_bucket(const void *a, const void *b) {
    const int64_t *x = a, *y = b; /* (bucket, row) pairs */
    return x[0] != y[0] ? (x[0] < y[0] ? -1 : 1) : (x[1] < y[1] ? -1 : x[1] > y[1]);
}

/* buckets kb[j*T + t] of the n_cache cache keys and qb[i*T + t] of the queries -> the pattern */
static int sa_build(sa_pattern *p, const int *kb, int64_t n_cache, int64_t nk, const int *qb, int Mq, int T) {
    const int B = 128;
    p->nkb = (int)((nk + B - 1) / B), p->nqb = (Mq + B - 1) / B;
    p->kpos = malloc((size_t)nk * sizeof(int64_t));
    p->qpos = malloc((size_t)Mq * sizeof(int));
    p->kset = calloc((size_t)p->nkb * T * 4, sizeof(uint64_t));
    p->qset = calloc((size_t)p->nqb * T * 4, sizeof(uint64_t));
    int64_t *pairs = malloc((size_t)(n_cache > Mq ? n_cache : Mq) * 2 * sizeof(int64_t));
    if (!p->kpos || !p->qpos || !p->kset || !p->qset || !pairs) {
        free(pairs);
        return 0;
    }
    for (int64_t j = 0; j < n_cache; j++) pairs[2 * j] = kb[j * T], pairs[2 * j + 1] = j;
    qsort(pairs, (size_t)n_cache, 2 * sizeof(int64_t), cmp_bucket);
    for (int64_t r = 0; r < n_cache; r++) p->kpos[pairs[2 * r + 1]] = r;
    for (int64_t j = n_cache; j < nk; j++) p->kpos[j] = j; /* the chunk's rows follow in order */
    for (int64_t j = 0; j < n_cache; j++)
        for (int t = 0; t < T; t++) {
            const int b = kb[j * T + t];
            p->kset[((p->kpos[j] / B) * T + t) * 4 + b / 64] |= 1ull << (b % 64);
        }
    for (int i = 0; i < Mq; i++) pairs[2 * i] = qb[(int64_t)i * T], pairs[2 * i + 1] = i;
    qsort(pairs, (size_t)Mq, 2 * sizeof(int64_t), cmp_bucket);
    for (int r = 0; r < Mq; r++) p->qpos[pairs[2 * r + 1]] = r;
    for (int i = 0; i < Mq; i++)
        for (int t = 0; t < T; t++) {
            const int b = qb[(int64_t)i * T + t];
            p->qset[((p->qpos[i] / B) * T + t) * 4 + b / 64] |= 1ull << (b % 64);
        }
    free(pairs);
    return 1;
}

static int sa_attended(const sa_pattern *p, int qblock, int64_t kblock, int64_t n_cache, int T) {
    if ((kblock + 1) * 128 > n_cache) return 1; /* holds a chunk row */
    for (int t = 0; t < T; t++)
        for (int w = 0; w < 4; w++)
            if (p->qset[((size_t)qblock * T + t) * 4 + w] & p->kset[((size_t)kblock * T + t) * 4 + w]) return 1;
    return 0;
}

static void sa_free(sa_pattern *p) { free(p->kpos), free(p->qpos), free(p->kset), free(p->qset); }

/* Share of the dense attention mass (with the store's bias) of sampled queries that the sparse module
 * keeps, with the kernels' exact patterns rebuilt on the host from the definitions in backend.h:
 * AnnSA's sorted 128-row blocks (the queries' bf16 values on CUDA, as its kernel hashes them) and
 * AnnCA's per-frame selection. Only buckets on a knife's edge (a projection within rounding of 0)
 * can differ from the device's. */
static void probe(void *user, int cross, const float *q_dev, int Mq, const wm_kv *kv, int64_t n_cache) {
    wm_session *s = user;
    wm_backend *be = s->be;
    const wm_config *c = &s->m->cfg;
    const int D = c->dim, H = c->num_heads, HD = D / H, S = s->accel.recall_probe;
    const int bits = cross ? s->accel.ca_bits : s->accel.sa_bits, tables = cross ? s->accel.ca_tables : s->accel.sa_tables;
    if ((cross && !s->probe_ca) || (!cross && !s->probe_sa)) return;
    const int64_t nk = cross ? n_cache : n_cache + Mq;
    const int64_t CH = 4096;
    float *q = malloc((size_t)Mq * D * sizeof(float)), *proj = malloc((size_t)bits * tables * HD * sizeof(float));
    float *kb = malloc((size_t)CH * D * sizeof(float)), *vb = malloc((size_t)CH * D * sizeof(float));
    float *bias = malloc((size_t)nk * sizeof(float)), *score = malloc((size_t)S * H * nk * sizeof(float));
    unsigned char *allow = malloc((size_t)S * H * nk);
    unsigned char *qset = calloc((size_t)S * H * tables * 256 + 1, 1); /* AnnCA: bucket sets of each sampled query's frame */
    if (!q || !proj || !kb || !vb || !bias || !score || !allow || !qset) goto done;
    be->download(be, q, q_dev, (size_t)Mq * D);
    if (be->kind == WM_BACKEND_CUDA)
        for (size_t i = 0; i < (size_t)Mq * D; i++) q[i] = bf16_round(q[i]);
    wm_normal_fill(proj, (size_t)bits * tables * HD, s->seed, cross ? LSH_STREAM_CA : LSH_STREAM_SA, 0);
    memset(bias, 0, (size_t)nk * sizeof(float));
    be->kv_get_bias(be, kv, bias, 0, nk);
    const float scale = 1.0f / sqrtf((float)HD);
    int qi[PROBE_MAX];
    for (int i = 0; i < S; i++) qi[i] = (int)(((int64_t)i * Mq + Mq / 2) / S) % Mq; /* evenly spaced */
    /* AnnSA: every key's and query's buckets per head, [h][row][t] */
    int *kbk_all = cross ? NULL : malloc((size_t)H * nk * tables * sizeof(int));
    int *qb_all = cross ? NULL : malloc((size_t)H * Mq * tables * sizeof(int));
    if (!cross && (!kbk_all || !qb_all)) {
        free(kbk_all), free(qb_all);
        goto done;
    }
    if (!cross)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < Mq; i++)
                for (int t = 0; t < tables; t++)
                    qb_all[((size_t)h * Mq + i) * tables + t] = bucket(proj, bits, t, q + (size_t)i * D + h * HD, HD);
    if (cross)
        for (int i = 0; i < S; i++) {
            const int g0 = qi[i] / s->tpf * s->tpf;
            for (int r = g0; r < g0 + s->tpf && r < Mq; r++)
                for (int h = 0; h < H; h++)
                    for (int t = 0; t < tables; t++)
                        qset[(((size_t)i * H + h) * tables + t) * 256 + bucket(proj, bits, t, q + (size_t)r * D + h * HD, HD)] = 1;
        }
    const int64_t piece = CH;
    for (int64_t r0 = 0; r0 < nk; r0 += piece) {
        const int64_t n = nk - r0 < piece ? nk - r0 : piece;
        be->kv_read(be, kv, kb, vb, r0, n);
        for (int64_t j = 0; j < n; j++)
            for (int h = 0; h < H; h++) {
                const float *kk = kb + (size_t)j * D + h * HD;
                int kbk[4];
                for (int t = 0; t < tables; t++) {
                    kbk[t] = bucket(proj, bits, t, kk, HD);
                    if (!cross) kbk_all[((size_t)h * nk + r0 + j) * tables + t] = kbk[t];
                }
                for (int i = 0; i < S; i++) {
                    const float *qq = q + (size_t)qi[i] * D + h * HD;
                    float d = 0;
                    for (int e = 0; e < HD; e++) d += qq[e] * kk[e];
                    const size_t o = ((size_t)i * H + h) * nk + r0 + j;
                    score[o] = d * scale + bias[r0 + j];
                    int ok = 0;
                    for (int t = 0; t < tables && cross && !ok; t++) ok = qset[(((size_t)i * H + h) * tables + t) * 256 + kbk[t]];
                    allow[o] = (unsigned char)ok; /* AnnSA: decided below, once every key is hashed */
                }
            }
    }
    if (!cross) {
        for (int h = 0; h < H; h++) {
            sa_pattern pat;
            memset(&pat, 0, sizeof pat);
            if (!sa_build(&pat, kbk_all + (size_t)h * nk * tables, n_cache, nk, qb_all + (size_t)h * Mq * tables, Mq, tables)) {
                sa_free(&pat);
                free(kbk_all), free(qb_all);
                goto done;
            }
            for (int i = 0; i < S; i++) {
                const int qblock = pat.qpos[qi[i]] / 128;
                unsigned char *al = allow + ((size_t)i * H + h) * nk;
                for (int64_t j = 0; j < nk; j++) al[j] = (unsigned char)sa_attended(&pat, qblock, pat.kpos[j] / 128, n_cache, tables);
            }
            sa_free(&pat);
        }
        free(kbk_all), free(qb_all);
    }
    double sum = 0;
    for (int i = 0; i < S; i++)
        for (int h = 0; h < H; h++) {
            const float *sc = score + ((size_t)i * H + h) * nk;
            const unsigned char *al = allow + ((size_t)i * H + h) * nk;
            float m = -INFINITY;
            for (int64_t j = 0; j < nk; j++) m = sc[j] > m ? sc[j] : m;
            double tot = 0, kept = 0;
            for (int64_t j = 0; j < nk; j++) {
                double e = exp((double)sc[j] - m);
                tot += e;
                if (al[j]) kept += e;
            }
            sum += tot > 0 ? kept / tot : 1.0;
        }
    if (cross) s->stats.ca_recall = sum / ((double)S * H);
    else s->stats.sa_recall = sum / ((double)S * H);
done:
    free(q), free(proj), free(kb), free(vb), free(bias), free(score), free(allow), free(qset);
}

void wm_accel_plan(wm_session *s, int k, int nsteps, wm_attn_plan *plan) {
    const wm_accel_params *a = &s->accel;
    memset(plan, 0, sizeof *plan);
    plan->n_valid = s->cache.rows;
    const int clean = k >= nsteps;
    if (k == 0) s->stats.sa_recall = s->stats.ca_recall = -1.0;
    plan->write_match = clean && a->tempcache;
    plan->kv_only = clean; /* the cache pass keeps only the K/V it writes */
    /* the first sa_dense_steps of the denoising steps and the cache pass stay dense (docs/ACCEL.md) */
    const int sparse = !clean && k >= (int)floorf(a->sa_dense_steps * (float)nsteps + 1e-4f);
    if (sparse && a->annsa) {
        plan->sa_lsh = s->sa_lsh;
        plan->sa_layers = a->sa_layers ? a->sa_layers : ~0ull;
    }
    const int ca_sparse = sparse && a->annca && s->m->cfg.text_len >= a->ca_min_tokens;
    if (ca_sparse) plan->ca_lsh = s->ca_lsh;
    /* the probe looks at the last sparse step of the chunk, one layer per chunk in turn */
    if (a->recall_probe > 0 && sparse && k == nsteps - 1 && (a->annsa || ca_sparse)) {
        plan->probe = probe;
        plan->probe_user = s;
        plan->probe_layer = (int)(s->chunks % s->m->cfg.num_layers);
        s->probe_sa = a->annsa && ((plan->sa_layers >> (plan->probe_layer < 63 ? plan->probe_layer : 63)) & 1u);
        s->probe_ca = ca_sparse;
    }
}

void wm_accel_chunk_done(wm_session *s) {
    wm_backend *be = s->be;
    double n[4] = {0, 0, 0, 0};
    if (be->lsh_take_counts && (s->accel.annsa || s->accel.annca)) be->lsh_take_counts(be, n);
    s->stats.sa_density = n[1] > 0 ? n[0] / n[1] : 1.0;
    s->stats.ca_density = n[3] > 0 ? n[2] / n[3] : 1.0;
    s->stats.tc_merges = s->cache.merges_last;
    s->stats.tc_evictions = s->cache.evictions_last;
    s->stats.tc_merges_total = s->cache.merges_total;
    s->stats.tc_evictions_total = s->cache.evictions_total;
}
