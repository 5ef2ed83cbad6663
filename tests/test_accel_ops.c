/* test_accel_ops.c - the CPU backend's TempCache / AnnSA / AnnCA ops (docs/ACCEL.md, backend.h):
 *  1. TempCache's identity: duplicated keys == merged rows (kv_merge + kv_compact + log-count bias);
 *  2. the match and bias planes travel with kv_move / kv_compact; read/load round trip; normalisation;
 *  3. kv_match finds planted near-duplicates and reports the fp32 dot product; nc = 0 gives -1;
 *  4. LSH buckets (FAISS) == a plain C reference, FAISS's sign rule is ">= 0";
 *  5. AnnSA: one bucket == attention bit for bit; several buckets == a brute-force masked reference;
 *  6. AnnCA: the same two checks, and an empty selection gives zeros;
 *  7. lsh_new rejects bad shapes with a message. */
#include "backend.h"
#include "common.h"
#include "cpu/cpu_ops.h"
#include "harness.h"
#include "rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static wm_backend *be;

static float *randn(size_t n, uint64_t stream) {
    float *x = malloc(n * sizeof(float));
    wm_normal_fill(x, n, 7, stream, 0);
    return x;
}

static float dot_f32(const float *a, const float *b, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double w = 0;
    for (size_t i = 0; i < n; i++) w = fmax(w, fabs((double)a[i] - b[i]));
    return w;
}

/* ---------------- 1. TempCache identity ---------------- */
static void test_tempcache_identity(void) {
    enum { H = 2, D = 16, C = H * D, N = 12, MQ = 7 };
    float *k = randn(N * C, 1), *v = randn(N * C, 2), *q = randn(MQ * C, 3);
    /* group A: rows 3, 7, 9 share one key (9 the newest, the representative); group B: rows 1, 5 */
    memcpy(k + 7 * C, k + 3 * C, sizeof(float) * C);
    memcpy(k + 9 * C, k + 3 * C, sizeof(float) * C);
    memcpy(k + 5 * C, k + 1 * C, sizeof(float) * C);
    wm_kv *dense = be->kv_new(be, N, C), *merged = be->kv_new(be, N, C);
    be->kv_write(be, dense, 0, k, v, N);
    be->kv_write(be, merged, 0, k, v, N);
    /* the correspondences come from the match plane: row 9's best earlier row is 3 or 7 (sim 1) */
    be->kv_write_match(be, merged, 0, k, N);
    int64_t best = -2;
    float sim = 0;
    be->kv_match(be, merged, 9, 1, 0, 9, &best, &sim);
    printf("kv_match of row 9 among rows 0..8: best %lld sim %.7f\n", (long long)best, sim);
    CHECK((best == 3 || best == 7) && fabsf(sim - 1.0f) < 1e-5f);

    /* count-weighted means: 9 <- 3 (1:1), 5 <- 1 (1:1), then 9 <- 7 (2:1) */
    const int64_t d1[2] = {9, 5}, s1[2] = {3, 1}, d2[1] = {9}, s2[1] = {7};
    const float a1[2] = {0.5f, 0.5f}, b1[2] = {0.5f, 0.5f}, a2[1] = {2.0f / 3}, b2[1] = {1.0f / 3};
    be->kv_merge(be, merged, d1, s1, a1, b1, 2);
    be->kv_merge(be, merged, d2, s2, a2, b2, 1);
    const int64_t keep[9] = {0, 2, 4, 5, 6, 8, 9, 10, 11};
    be->kv_compact(be, merged, keep, 9);
    float bias[9] = {0};
    bias[3] = logf(2.0f); /* old row 5 */
    bias[6] = logf(3.0f); /* old row 9 */
    be->kv_set_bias(be, merged, 0, bias, 9);
    /* the merged V rows, checked directly */
    float kr[9 * C], vr[9 * C];
    be->kv_read(be, merged, kr, vr, 0, 9);
    float vm[C];
    for (int c = 0; c < C; c++) vm[c] = (v[3 * C + c] + v[7 * C + c] + v[9 * C + c]) / 3;
    wm_test_compare("merged V (3 rows)", vr + 6 * C, vm, C, 1e-6f, 1e-5f);
    CHECK(memcmp(kr + 6 * C, k + 9 * C, sizeof(float) * C) == 0 &&
          memcmp(vr + 4 * C, v + 6 * C, sizeof(float) * C) == 0);

    const float scale = 1.0f / sqrtf((float)D);
    float out_d[MQ * C], out_m[MQ * C];
    be->attention(be, out_d, q, dense, N, MQ, H, D, scale);
    be->attention(be, out_m, q, merged, 9, MQ, H, D, scale);
    wm_test_compare("merged store == duplicates", out_m, out_d, MQ * C, 1e-5f, 1e-5f);
    /* without the counts the merge is wrong: this test can fail */
    const float zero[9] = {0};
    be->kv_set_bias(be, merged, 0, zero, 9);
    be->attention(be, out_m, q, merged, 9, MQ, H, D, scale);
    double worst = max_abs_diff(out_m, out_d, MQ * C);
    printf("without the log(m) bias: max|diff| = %.3g (must be large)\n", worst);
    CHECK(worst > 1e-3);
    be->kv_free(be, dense);
    be->kv_free(be, merged);
    free(k), free(v), free(q);
}

/* ---------------- 2. planes ---------------- */
static void test_planes(void) {
    enum { C = 24, N = 8 };
    float *k = randn(N * C, 10), *v = randn(N * C, 11), *x = randn(N * C, 12);
    memset(x + 2 * C, 0, sizeof(float) * C); /* a zero row */
    float bias[N];
    for (int i = 0; i < N; i++) bias[i] = 0.1f * (float)(i + 1);
    wm_kv *kv = be->kv_new(be, N, C);
    float m[N * C];
    be->kv_read_match(be, kv, m, 0, N); /* no plane yet: zeros */
    CHECK(wm_test_max_abs(m, N * C) == 0.0f);
    be->kv_write(be, kv, 0, k, v, N);
    be->kv_set_bias(be, kv, 0, bias, N);
    be->kv_write_match(be, kv, 0, x, N);
    be->kv_read_match(be, kv, m, 0, N);
    double worst_norm = 0, worst_dir = 0;
    for (int r = 0; r < N; r++) {
        if (r == 2) continue;
        double s = 0, nx = 0;
        for (int c = 0; c < C; c++)
            s += (double)m[r * C + c] * m[r * C + c], nx += (double)x[r * C + c] * x[r * C + c];
        worst_norm = fmax(worst_norm, fabs(sqrt(s) - 1));
        for (int c = 0; c < C; c++) worst_dir = fmax(worst_dir, fabs(m[r * C + c] * sqrt(nx) - x[r * C + c]));
    }
    printf("match rows: max |norm - 1| = %.3g, max |m*|x| - x| = %.3g\n", worst_norm, worst_dir);
    CHECK(worst_norm < 1e-6 && worst_dir < 1e-5);
    CHECK(wm_test_max_abs(m + 2 * C, C) == 0.0f);

    /* load/read round trip into a second store (rows 3..5 of it) */
    wm_kv *kv2 = be->kv_new(be, N, C);
    be->kv_load_match(be, kv2, m + C, 3, 3);
    float m2[N * C];
    be->kv_read_match(be, kv2, m2, 0, N);
    CHECK(memcmp(m2 + 3 * C, m + C, sizeof(float) * 3 * C) == 0);
    CHECK(wm_test_max_abs(m2, 3 * C) == 0.0f && wm_test_max_abs(m2 + 6 * C, 2 * C) == 0.0f);

    /* kv_compact carries every plane */
    const int64_t keep[4] = {1, 4, 5, 7};
    be->kv_compact(be, kv, keep, 4);
    float kc[N * C], vc[N * C], mc[N * C], bc[N];
    be->kv_read(be, kv, kc, vc, 0, 4);
    be->kv_read_match(be, kv, mc, 0, 4);
    be->kv_get_bias(be, kv, bc, 0, 4);
    int ok = 1;
    for (int i = 0; i < 4; i++) {
        const int64_t r = keep[i];
        ok &= memcmp(kc + i * C, k + r * C, sizeof(float) * C) == 0;
        ok &= memcmp(vc + i * C, v + r * C, sizeof(float) * C) == 0;
        ok &= memcmp(mc + i * C, m + r * C, sizeof(float) * C) == 0;
        ok &= bc[i] == bias[r];
    }
    printf("kv_compact carries K, V, match, bias: %s\n", ok ? "ok" : "MISMATCH");
    CHECK(ok);
    /* kv_move carries match and bias: rows 0..2 (old 1, 4, 5) to 2..4 */
    be->kv_move(be, kv, 2, 0, 3);
    be->kv_read_match(be, kv, mc, 0, 5);
    be->kv_get_bias(be, kv, bc, 0, 5);
    ok = 1;
    for (int i = 0; i < 3; i++) {
        ok &= memcmp(mc + (2 + i) * C, m + keep[i] * C, sizeof(float) * C) == 0;
        ok &= bc[2 + i] == bias[keep[i]];
    }
    printf("kv_move carries match, bias: %s\n", ok ? "ok" : "MISMATCH");
    CHECK(ok);
    be->kv_free(be, kv);
    be->kv_free(be, kv2);
    free(k), free(v), free(x);
}

/* ---------------- 3. kv_match ---------------- */
static void test_match(void) {
    enum { C = 64, NC = 600, NQ = 20, N = NC + NQ };
    float *x = randn((size_t)N * C, 20), *noise = randn((size_t)NQ * C, 21);
    int64_t planted[NQ];
    for (int j = 0; j < NQ; j++) planted[j] = -1;
    for (int j = 0; j < 10; j++) { /* a near-duplicate of candidate p */
        const int64_t p = (37 * j + 11) % NC;
        planted[j] = p;
        for (int c = 0; c < C; c++) x[(NC + j) * C + c] = x[p * C + c] + 0.05f * noise[j * C + c];
    }
    wm_kv *kv = be->kv_new(be, N, C);
    float *zero = calloc((size_t)N * C, sizeof(float));
    be->kv_write(be, kv, 0, zero, zero, N);
    be->kv_write_match(be, kv, 0, x, N);
    float *m = malloc(sizeof(float) * N * C);
    be->kv_read_match(be, kv, m, 0, N);
    int64_t best[NQ];
    float sim[NQ];
    be->kv_match(be, kv, NC, NQ, 0, NC, best, sim);
    int planted_ok = 0, exact = 0, sim_ok = 1;
    double worst_gap = 0, min_planted_sim = 1;
    for (int j = 0; j < NQ; j++) {
        const float *qj = m + (NC + j) * C;
        float tmax = -INFINITY;
        for (int r = 0; r < NC; r++) tmax = fmaxf(tmax, dot_f32(qj, m + r * C, C));
        if (best[j] < 0 || best[j] >= NC) {
            sim_ok = 0;
            continue;
        }
        sim_ok &= sim[j] == dot_f32(qj, m + best[j] * C, C);
        exact += sim[j] == tmax;
        worst_gap = fmax(worst_gap, tmax - sim[j]);
        if (planted[j] >= 0) {
            planted_ok += best[j] == planted[j];
            min_planted_sim = fmin(min_planted_sim, sim[j]);
        }
    }
    printf("kv_match: planted found %d/10 (min sim %.5f), exact best %d/%d, worst gap to the best %.3g\n",
           planted_ok, min_planted_sim, exact, NQ, worst_gap);
    CHECK(planted_ok == 10 && min_planted_sim > 0.99);
    CHECK(sim_ok);
    CHECK(worst_gap < 0.05);
    /* a candidate range that does not start at 0: planted p in [100, 400) found, others stay inside */
    be->kv_match(be, kv, NC, 10, 100, 300, best, sim);
    int range_ok = 1;
    for (int j = 0; j < 10; j++) {
        range_ok &= best[j] >= 100 && best[j] < 400;
        if (planted[j] >= 100 && planted[j] < 400) range_ok &= best[j] == planted[j];
    }
    CHECK(range_ok);
    /* nc == 0 */
    best[0] = 5;
    be->kv_match(be, kv, NC, 1, 0, 0, best, sim);
    CHECK(best[0] == -1);
    be->kv_free(be, kv);
    free(x), free(noise), free(zero), free(m);
}

/* ---------------- plain C LSH ---------------- */
/* bucket of x in table t: sum_b [proj[t*bits+b] . x >= 0] << b; *margin = min |projection| */
static int ref_bucket(const float *proj, int D, int bits, int t, const float *x, double *margin) {
    int b = 0;
    for (int bb = 0; bb < bits; bb++) {
        double s = 0;
        for (int c = 0; c < D; c++) s += (double)proj[(t * bits + bb) * D + c] * x[c];
        if (margin) *margin = fmin(*margin, fabs(s));
        if (s >= 0) b |= 1 << bb;
    }
    return b;
}

/* ---------------- 4. LSH buckets ---------------- */
static void test_lsh(void) {
    const int shapes[3][3] = {{24, 5, 3}, {16, 8, 4}, {8, 1, 1}}; /* D, bits, tables */
    for (int s = 0; s < 3; s++) {
        const int D = shapes[s][0], bits = shapes[s][1], T = shapes[s][2], H = 3, n = 500;
        float *proj = randn((size_t)bits * T * D, 30 + s), *x = randn((size_t)n * H * D, 40 + s);
        wm_lsh *lsh = be->lsh_new(be, D, bits, T, proj);
        CHECK(lsh != NULL);
        if (!lsh) continue;
        uint8_t *bk = malloc((size_t)n * T);
        CHECK(wm_cpu_lsh_buckets(lsh, n, x + D, H * D, bk) == 0); /* head 1 of rows of H*D */
        int bad = 0, near = 0;
        for (int i = 0; i < n; i++)
            for (int t = 0; t < T; t++) {
                double margin = INFINITY;
                int r = ref_bucket(proj, D, bits, t, x + (size_t)i * H * D + D, &margin);
                if (r != bk[i * T + t]) {
                    if (margin < 1e-5)
                        near++;
                    else
                        bad++;
                }
            }
        printf("LSH D=%d bits=%d tables=%d: %d vectors, %d mismatches (+%d at |projection| < 1e-5)\n", D,
               bits, T, n, bad, near);
        CHECK(bad == 0);
        be->lsh_free(be, lsh);
        free(proj), free(x), free(bk);
    }
    /* the sign rule at exactly 0: bit set (">= 0"); under "> 0" these buckets would differ */
    const float proj[4 * 2] = {1, -1, 0, 0, 0, 0, 1, 1};
    const float xs[4][4] = {{0, 0, 0, 0}, {2, 2, -1, 1}, {2, 2, -1, 0.5f}, {1, 2, 3, 4}};
    const int want[4] = {3, 3, 1, 2};
    wm_lsh *lsh = be->lsh_new(be, 4, 2, 1, proj);
    CHECK(lsh != NULL);
    if (lsh) {
        uint8_t bk[4];
        CHECK(wm_cpu_lsh_buckets(lsh, 4, &xs[0][0], 4, bk) == 0);
        printf("sign rule: buckets %d %d %d %d (want %d %d %d %d)\n", bk[0], bk[1], bk[2], bk[3], want[0],
               want[1], want[2], want[3]);
        for (int i = 0; i < 4; i++) CHECK(bk[i] == want[i]);
        be->lsh_free(be, lsh);
    }
}

/* ---------------- references for the sparse attentions ---------------- */
/* out[Mq, H*D] = masked softmax attention in double; allow [H, Mq, Mk]; no allowed key -> zeros */
static void ref_masked(float *out, const float *q, const float *k, const float *v, const float *bias, int Mk,
                       int Mq, int H, int D, float scale, const uint8_t *allow) {
    const int ld = H * D;
    double *p = malloc(sizeof(double) * (Mk > 0 ? Mk : 1));
    for (int h = 0; h < H; h++)
        for (int i = 0; i < Mq; i++) {
            const uint8_t *al = allow + ((size_t)h * Mq + i) * Mk;
            double mx = -INFINITY;
            for (int j = 0; j < Mk; j++) {
                if (!al[j]) continue;
                double s = 0;
                for (int c = 0; c < D; c++)
                    s += (double)q[(size_t)i * ld + h * D + c] * k[(size_t)j * ld + h * D + c];
                p[j] = s * scale + (bias ? bias[j] : 0);
                mx = fmax(mx, p[j]);
            }
            double sum = 0;
            for (int j = 0; j < Mk; j++)
                if (al[j]) sum += (p[j] = exp(p[j] - mx));
            for (int c = 0; c < D; c++) {
                double o = 0;
                for (int j = 0; j < Mk; j++)
                    if (al[j]) o += p[j] * v[(size_t)j * ld + h * D + c];
                out[(size_t)i * ld + h * D + c] = sum > 0 ? (float)(o / sum) : 0.0f;
            }
        }
    free(p);
}

/* rows of H*D: clustered (one of the first `clusters` of a fixed set of centres + small noise) or plain
 * normal (clusters 0); every head vector then kept off the LSH hyperplanes (|projection| >= 1e-3) so
 * FAISS's sgemm and the double reference agree */
static float *make_rows(int n, int H, int D, int clusters, uint64_t stream, const float *proj, int nproj) {
    float *x = randn((size_t)n * H * D, stream);
    if (clusters > 0) {
        float *cen = randn((size_t)clusters * D, 999);
        for (int r = 0; r < n; r++)
            for (int h = 0; h < H; h++) {
                const int cl = (int)(((unsigned)r * 7919u + (unsigned)h * 104729u + (unsigned)stream) %
                                     (unsigned)clusters);
                float *xv = x + ((size_t)r * H + h) * D;
                for (int c = 0; c < D; c++) xv[c] = cen[cl * D + c] + 0.05f * xv[c];
            }
        free(cen);
    }
    for (int i = 0; i < n * H; i++) {
        float *xv = x + (size_t)i * D;
        for (int tries = 0; tries < 100; tries++) {
            double margin = INFINITY;
            for (int pr = 0; pr < nproj; pr++) {
                double s = 0;
                for (int c = 0; c < D; c++) s += (double)proj[pr * D + c] * xv[c];
                margin = fmin(margin, fabs(s));
            }
            if (margin >= 1e-3) break;
            xv[tries % D] += 0.01f;
        }
    }
    return x;
}

/* stable order by table-0 bucket: pos[r] */
static void ref_order(const int *bucket0, int n, int *pos) {
    int p = 0;
    for (int b = 0; b < 256; b++)
        for (int r = 0; r < n; r++)
            if (bucket0[r] == b) pos[r] = p++;
}

/* ---------------- 5. AnnSA ---------------- */
/* Runs annsa on random data and compares with the reference from the definition; returns density. */
static double check_annsa(int H, int D, int n_cache, int Mq, int bits, int T, int clusters, int q_clusters,
                          uint64_t seed) {
    const int n_rows = n_cache + Mq, ld = H * D, B = 128, NP = bits * T;
    const int n_qb = (Mq + B - 1) / B, n_kb = (n_rows + B - 1) / B;
    float *proj = randn((size_t)NP * D, seed);
    float *k = make_rows(n_rows, H, D, clusters, seed + 1, proj, NP),
          *v = randn((size_t)n_rows * ld, seed + 2);
    float *q = make_rows(Mq, H, D, q_clusters, seed + 3, proj, NP);
    float *bias = malloc(sizeof(float) * n_rows);
    for (int j = 0; j < n_rows; j++) bias[j] = (j % 5 == 0) ? logf((float)(1 + j % 3)) : 0.0f;
    wm_kv *kv = be->kv_new(be, n_rows, ld);
    be->kv_write(be, kv, 0, k, v, n_rows);
    be->kv_set_bias(be, kv, 0, bias, n_rows);
    wm_lsh *lsh = be->lsh_new(be, D, bits, T, proj);
    CHECK(lsh != NULL);
    const float scale = 1.0f / sqrtf((float)D);
    float *out = malloc(sizeof(float) * Mq * ld), *ref = malloc(sizeof(float) * Mq * ld);
    double counts[4];
    be->lsh_take_counts(be, counts);
    be->attention_annsa(be, out, q, kv, n_cache, Mq, H, D, scale, lsh);
    CHECK(wm_take_failure() == WM_OK);
    be->lsh_take_counts(be, counts);

    /* the definition, independently */
    uint8_t *allow = calloc((size_t)H * Mq * n_rows, 1);
    int *kb0 = malloc(sizeof(int) * n_rows * T), *qb0 = malloc(sizeof(int) * Mq * T);
    int *kpos = malloc(sizeof(int) * n_rows), *qpos = malloc(sizeof(int) * Mq),
        *tmp = malloc(sizeof(int) * n_rows);
    uint8_t *att = malloc((size_t)n_qb * n_kb);
    double attended = 0;
    for (int h = 0; h < H; h++) {
        for (int r = 0; r < n_cache; r++)
            for (int t = 0; t < T; t++)
                kb0[r * T + t] = ref_bucket(proj, D, bits, t, k + (size_t)r * ld + h * D, NULL);
        for (int i = 0; i < Mq; i++)
            for (int t = 0; t < T; t++)
                qb0[i * T + t] = ref_bucket(proj, D, bits, t, q + (size_t)i * ld + h * D, NULL);
        for (int r = 0; r < n_cache; r++) tmp[r] = kb0[r * T];
        ref_order(tmp, n_cache, kpos);
        for (int r = n_cache; r < n_rows; r++) kpos[r] = r;
        for (int i = 0; i < Mq; i++) tmp[i] = qb0[i * T];
        ref_order(tmp, Mq, qpos);
        for (int a = 0; a < n_qb; a++)
            for (int b = 0; b < n_kb; b++) {
                int on = 0;
                for (int r = 0; r < n_rows && !on; r++) {
                    if (kpos[r] / B != b) continue;
                    if (r >= n_cache) {
                        on = 1;
                        break;
                    } /* a chunk row */
                    for (int i = 0; i < Mq && !on; i++)
                        if (qpos[i] / B == a)
                            for (int t = 0; t < T; t++)
                                if (qb0[i * T + t] == kb0[r * T + t]) on = 1;
                }
                att[a * n_kb + b] = (uint8_t)on;
                attended += on;
            }
        for (int i = 0; i < Mq; i++)
            for (int j = 0; j < n_rows; j++)
                allow[((size_t)h * Mq + i) * n_rows + j] = att[(qpos[i] / B) * n_kb + kpos[j] / B];
    }
    ref_masked(ref, q, k, v, bias, n_rows, Mq, H, D, scale, allow);
    char what[96];
    snprintf(what, sizeof what, "annsa b%d t%d c%d == ref", bits, T, clusters);
    wm_test_compare(what, out, ref, (size_t)Mq * ld, 1e-5f, 1e-5f);
    const double total = (double)H * n_qb * n_kb;
    printf("  block pairs attended %.0f / %.0f (reference %.0f / %.0f)\n", counts[0], counts[1], attended,
           total);
    CHECK(counts[0] == attended && counts[1] == total && counts[2] == 0 && counts[3] == 0);
    be->lsh_take_counts(be, counts); /* reset */
    CHECK(counts[0] == 0 && counts[1] == 0);
    be->lsh_free(be, lsh);
    be->kv_free(be, kv);
    free(proj), free(k), free(v), free(q), free(bias), free(out), free(ref), free(allow), free(kb0),
        free(qb0);
    free(kpos), free(qpos), free(tmp), free(att);
    return attended / total;
}

/* every projection row = u and every head vector with x.u > 0: one bucket everywhere */
static void make_one_bucket(float *x, size_t n_vec, int D, const float *u) {
    double uu = 0;
    for (int c = 0; c < D; c++) uu += (double)u[c] * u[c];
    for (size_t i = 0; i < n_vec; i++) {
        float *xv = x + i * D;
        double s = 0;
        for (int c = 0; c < D; c++) s += (double)xv[c] * u[c];
        if (s < 0.5)
            for (int c = 0; c < D; c++) xv[c] += (float)((0.5 - s + 0.25) * u[c] / uu);
    }
}

static void test_annsa(void) {
    /* one bucket: bit-identical to attention, every block pair attended */
    {
        enum { H = 2, D = 16, LD = H * D, NCACHE = 400, MQ = 300, NR = NCACHE + MQ, BITS = 8, T = 2 };
        float u[D], proj[BITS * T * D];
        for (int c = 0; c < D; c++) u[c] = 0.3f + 0.05f * (float)c;
        for (int r = 0; r < BITS * T; r++) memcpy(proj + r * D, u, sizeof u);
        float *k = randn((size_t)NR * LD, 50), *v = randn((size_t)NR * LD, 51),
              *q = randn((size_t)MQ * LD, 52);
        make_one_bucket(k, (size_t)NR * H, D, u);
        make_one_bucket(q, (size_t)MQ * H, D, u);
        float bias[NR];
        for (int j = 0; j < NR; j++) bias[j] = (j % 7 == 0) ? logf(2.0f) : 0.0f;
        wm_kv *kv = be->kv_new(be, NR, LD);
        be->kv_write(be, kv, 0, k, v, NR);
        be->kv_set_bias(be, kv, 0, bias, NR);
        wm_lsh *lsh = be->lsh_new(be, D, BITS, T, proj);
        CHECK(lsh != NULL);
        float *out = malloc(sizeof(float) * MQ * LD), *dense = malloc(sizeof(float) * MQ * LD);
        double counts[4];
        be->lsh_take_counts(be, counts);
        be->attention(be, dense, q, kv, NR, MQ, H, D, 0.25f);
        be->attention_annsa(be, out, q, kv, NCACHE, MQ, H, D, 0.25f, lsh);
        be->lsh_take_counts(be, counts);
        const int same = memcmp(out, dense, sizeof(float) * MQ * LD) == 0;
        printf("annsa one bucket: %s attention (max|diff| %.3g), pairs %.0f / %.0f\n",
               same ? "bit-identical to" : "DIFFERS from", max_abs_diff(out, dense, (size_t)MQ * LD),
               counts[0], counts[1]);
        CHECK(same);
        CHECK(counts[1] == 2 * 3 * 6 && counts[0] == counts[1]);
        be->lsh_free(be, lsh);
        be->kv_free(be, kv);
        free(k), free(v), free(q), free(out), free(dense);
    }
    /* several buckets: the reference from the definition; some block pairs skipped */
    double d1 = check_annsa(2, 16, 1024, 256, 4, 1, 12, 12, 100);
    double d2 = check_annsa(2, 16, 1000, 200, 3, 2, 10, 3, 200); /* partial blocks, two tables */
    double d3 = check_annsa(1, 8, 300, 130, 2, 3, 0, 0, 300);    /* unclustered data */
    printf("annsa density: %.3f %.3f %.3f\n", d1, d2, d3);
    CHECK(d1 < 1 && d2 < 1);
}

/* ---------------- 6. AnnCA ---------------- */
static void test_annca(void) {
    const float scale = 0.25f;
    /* reference from the definition on clustered data */
    {
        enum {
            H = 2,
            D = 16,
            LD = H * D,
            NR = 300,
            GROUP = 60,
            MQ = 4 * GROUP,
            BITS = 4,
            T = 2,
            NP = BITS * T
        };
        const int G = MQ / GROUP;
        float *proj = randn(NP * D, 60);
        float *k = make_rows(NR, H, D, 12, 61, proj, NP), *v = randn((size_t)NR * LD, 62);
        float *q = make_rows(MQ, H, D, 12, 63, proj, NP);
        /* some groups are one query repeated, so their selections are narrow */
        for (int i = 1; i < GROUP; i++)
            memcpy(q + (size_t)(2 * GROUP + i) * LD, q + (size_t)(2 * GROUP) * LD, sizeof(float) * LD);
        wm_kv *kv = be->kv_new(be, NR, LD);
        be->kv_write(be, kv, 0, k, v, NR);
        wm_lsh *lsh = be->lsh_new(be, D, BITS, T, proj);
        CHECK(lsh != NULL);
        float *out = malloc(sizeof(float) * MQ * LD), *ref = malloc(sizeof(float) * MQ * LD);
        double counts[4];
        be->lsh_take_counts(be, counts);
        be->attention_annca(be, out, q, kv, NR, MQ, H, D, scale, GROUP, lsh);
        be->lsh_take_counts(be, counts);
        uint8_t *allow = calloc((size_t)H * MQ * NR, 1);
        double selected = 0;
        for (int g = 0; g < G; g++)
            for (int h = 0; h < H; h++)
                for (int j = 0; j < NR; j++) {
                    int on = 0;
                    for (int i = g * GROUP; i < (g + 1) * GROUP && !on; i++)
                        for (int t = 0; t < T; t++)
                            if (ref_bucket(proj, D, BITS, t, k + (size_t)j * LD + h * D, NULL) ==
                                ref_bucket(proj, D, BITS, t, q + (size_t)i * LD + h * D, NULL))
                                on = 1;
                    selected += on;
                    for (int i = g * GROUP; i < (g + 1) * GROUP; i++)
                        allow[((size_t)h * MQ + i) * NR + j] = (uint8_t)on;
                }
        ref_masked(ref, q, k, v, NULL, NR, MQ, H, D, scale, allow);
        wm_test_compare("annca == ref", out, ref, (size_t)MQ * LD, 1e-5f, 1e-5f);
        const double total = (double)G * H * NR;
        printf("  keys selected %.0f / %.0f (reference %.0f / %.0f)\n", counts[2], counts[3], selected,
               total);
        CHECK(counts[2] == selected && counts[3] == total && counts[0] == 0 && counts[1] == 0);
        CHECK(selected < total);
        be->lsh_free(be, lsh);
        be->kv_free(be, kv);
        free(proj), free(k), free(v), free(q), free(out), free(ref), free(allow);
    }
    /* one bucket: bit-identical to attention; a group in another bucket: zeros */
    {
        enum { H = 2, D = 8, LD = H * D, NR = 77, GROUP = 40, MQ = 3 * GROUP };
        float u[D], proj[2 * D];
        for (int c = 0; c < D; c++) u[c] = 1.0f - 0.1f * (float)c;
        memcpy(proj, u, sizeof u), memcpy(proj + D, u, sizeof u); /* bits 1, tables 2 */
        float *k = randn((size_t)NR * LD, 70), *v = randn((size_t)NR * LD, 71),
              *q = randn((size_t)MQ * LD, 72);
        make_one_bucket(k, (size_t)NR * H, D, u);
        make_one_bucket(q, (size_t)MQ * H, D, u);
        wm_kv *kv = be->kv_new(be, NR, LD);
        be->kv_write(be, kv, 0, k, v, NR);
        wm_lsh *lsh = be->lsh_new(be, D, 1, 2, proj);
        CHECK(lsh != NULL);
        float *out = malloc(sizeof(float) * MQ * LD), *dense = malloc(sizeof(float) * MQ * LD);
        double counts[4];
        be->lsh_take_counts(be, counts);
        be->attention(be, dense, q, kv, NR, MQ, H, D, scale);
        be->attention_annca(be, out, q, kv, NR, MQ, H, D, scale, GROUP, lsh);
        CHECK(memcmp(out, dense, sizeof(float) * MQ * LD) == 0);
        printf("annca one bucket: max|diff| vs attention %.3g (must be 0)\n",
               max_abs_diff(out, dense, (size_t)MQ * LD));
        /* group 1's queries flipped to the other side: no key shares its bucket */
        for (int i = GROUP * LD; i < 2 * GROUP * LD; i++) q[i] = -q[i];
        be->attention_annca(be, out, q, kv, NR, MQ, H, D, scale, GROUP, lsh);
        CHECK(wm_test_max_abs(out + GROUP * LD, (size_t)GROUP * LD) == 0.0f);
        CHECK(memcmp(out, dense, sizeof(float) * GROUP * LD) == 0 &&
              memcmp(out + 2 * GROUP * LD, dense + 2 * GROUP * LD, sizeof(float) * GROUP * LD) == 0);
        be->lsh_take_counts(be, counts); /* both calls: all 3 groups, then groups 0 and 2 */
        printf("annca with an empty group: selected %.0f / %.0f\n", counts[2], counts[3]);
        CHECK(counts[2] == 5.0 * H * NR && counts[3] == 6.0 * H * NR);
        be->lsh_free(be, lsh);
        be->kv_free(be, kv);
        free(k), free(v), free(q), free(out), free(dense);
    }
}

/* ---------------- 7. bad arguments ---------------- */
static void test_bad_args(void) {
    float proj[9 * 5 * 8] = {0};
    const int bad[4][2] = {{0, 1}, {9, 1}, {4, 0}, {4, 5}};
    for (int i = 0; i < 4; i++) {
        wm_clear_error();
        wm_lsh *lsh = be->lsh_new(be, 8, bad[i][0], bad[i][1], proj);
        printf("lsh_new(bits %d, tables %d): %s '%s'\n", bad[i][0], bad[i][1], lsh ? "ACCEPTED" : "refused",
               wm_get_error());
        CHECK(lsh == NULL && wm_get_error()[0] != 0);
        if (lsh) be->lsh_free(be, lsh);
    }
    wm_lsh *lsh = be->lsh_new(be, 8, 8, 4, proj);
    CHECK(lsh != NULL);
    be->lsh_free(be, lsh);
}

int main(void) {
    be = wm_backend_cpu_new(0);
    test_tempcache_identity();
    test_planes();
    test_match();
    test_lsh();
    test_annsa();
    test_annca();
    test_bad_args();
    be->destroy(be);
    return wm_test_finish("test_accel_ops");
}
