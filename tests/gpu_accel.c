/* gpu_accel.c - the TempCache / AnnSA / AnnCA ops of the CUDA backend against the CPU backend (the
 * reference): the match plane (write, read, load, move, compact), kv_match, kv_merge, kv_compact,
 * sign-LSH buckets, attention_annsa and attention_annca with their density counters, and the
 * one-bucket case of attention_annsa, which must be bit-identical to `attention`. Then a timing of
 * attention_annsa against attention at Wan2.1-1.3B shapes (informational).
 *
 * Buckets: the CUDA backend hashes the bf16 values it stores, the CPU the fp32 ones, so the inputs of
 * the hashed ops are fed already rounded to bf16. Most hashed data here is also quantized (multiples
 * of 1/16 against projections in multiples of 1/8), which makes every projection exact in fp32 in any
 * order of summation: then both backends must agree on every bucket, and so on every block and every
 * selected key. On unquantized data buckets may differ only where |projection| is within rounding
 * of 0 (checked against a double-precision projection).
 * Exit 77 (skipped) without a CUDA device. `--no-timing` skips the timing, `--small` the large shapes. */
#include "backend.h"
#include "common.h"
#include "cpu/cpu_ops.h" /* wm_cpu_lsh_buckets: the CPU's (FAISS's) buckets */
#include "harness.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef WM_HAVE_CUDA
/* accel_cuda.c's testing hook: bucket codes [nvec][tables] into device memory */
int wm_cu_lsh_hash(wm_backend *be, const wm_lsh *lsh, uint8_t *codes, const void *x, int x_is_f32, int64_t nvec);
void wm_cu_accel_profile(int on);
int wm_cu_accel_profile_read(float *ms, int max);
#endif

static wm_backend *cpu, *gpu;
static int small_only;

/* ---- host helpers ---- */

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static double uniform(void) { /* xorshift64*, (0, 1) */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return ((double)((rng_state * 0x2545F4914F6CDD1Dull) >> 11) + 0.5) / 9007199254740992.0;
}
static float normal(void) { return (float)(sqrt(-2.0 * log(uniform())) * cos(6.283185307179586 * uniform())); }
static float *host_randn(size_t n, float scale) {
    float *h = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = scale * normal();
    return h;
}
/* multiples of 1/16 in [-4, 4]: exact in bf16 */
static float *host_quant(size_t n, float scale) {
    float *h = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        float k = roundf(normal() * scale * 16.0f);
        h[i] = fminf(64.0f, fmaxf(-64.0f, k)) / 16.0f;
    }
    return h;
}
/* multiples of 1/8 in [-4, 4]: with host_quant data every projection is exact in fp32 */
static float *proj_quant(int rows, int D) {
    float *p = malloc((size_t)rows * D * sizeof(float));
    for (size_t i = 0; i < (size_t)rows * D; i++) p[i] = fminf(32.0f, fmaxf(-32.0f, roundf(normal() * 8.0f))) / 8.0f;
    return p;
}
static void to_bf16(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = wm_test_bf16_round(x[i]);
}
static void check_failure(const char *what) {
    wm_status st = wm_take_failure();
    if (st != WM_OK) {
        printf("%s: an op failed: %s\n", what, wm_get_error());
        wm_test_failures++;
    }
}

/* A store on a backend with rows of k, v (host fp32), optional bias. */
static wm_kv *store(wm_backend *be, int64_t rows, int dim, const float *k, const float *v, const float *bias) {
    wm_kv *kv = be->kv_new(be, rows, dim);
    float *kd = wm_test_dev(be, k, (size_t)rows * dim), *vd = wm_test_dev(be, v, (size_t)rows * dim);
    be->kv_write(be, kv, 0, kd, vd, rows);
    if (bias) be->kv_set_bias(be, kv, 0, bias, rows);
    be->sync(be);
    be->free(be, kd), be->free(be, vd);
    return kv;
}

/* ---- the match plane ---- */

static void test_match_plane(void) {
    const int64_t rows = 600;
    const int dim = 1536;
    const size_t n = (size_t)rows * dim;
    float *k = host_quant(n, 1.0f), *v = host_quant(n, 1.0f), *x = host_randn(n, 2.0f);
    for (int c = 0; c < dim; c++) x[(size_t)7 * dim + c] = 0.0f; /* a zero row stays zero */
    wm_kv *kc = store(cpu, rows, dim, k, v, NULL), *kg = store(gpu, rows, dim, k, v, NULL);
    float *rc = malloc(n * sizeof(float)), *rg = malloc(n * sizeof(float));
    /* before any write: zeros */
    gpu->kv_read_match(gpu, kg, rg, 0, 10);
    size_t nz = 0;
    for (size_t i = 0; i < (size_t)10 * dim; i++) nz += rg[i] != 0.0f;
    printf("%-28s %s\n", "read_match (no plane)", nz ? "MISMATCH" : "ok (zeros)");
    if (nz) wm_test_failures++;

    float *xc = wm_test_dev(cpu, x, n), *xg = wm_test_dev(gpu, x, n);
    cpu->kv_write_match(cpu, kc, 0, xc, rows - 100); /* rows 500.. stay unwritten */
    gpu->kv_write_match(gpu, kg, 0, xg, rows - 100);
    cpu->kv_read_match(cpu, kc, rc, 0, rows);
    gpu->kv_read_match(gpu, kg, rg, 0, rows);
    wm_test_compare("kv_write_match (bf16)", rg, rc, n, 4e-4f, 8e-3f);
    /* unit norm (bf16 rounding of a unit row: |norm - 1| < 1e-2) */
    double worst = 0;
    for (int64_t r = 0; r < rows - 100; r++) {
        if (r == 7) continue;
        double s = 0;
        for (int c = 0; c < dim; c++) s += (double)rg[r * dim + c] * rg[r * dim + c];
        worst = fmax(worst, fabs(sqrt(s) - 1.0));
    }
    printf("%-28s max |norm-1| = %.2g: %s\n", "match rows unit norm", worst, worst < 1e-2 ? "ok" : "MISMATCH");
    if (!(worst < 1e-2)) wm_test_failures++;

    /* load / read: what kv_load_match stores is the bf16 rounding of the host values */
    float *h = host_randn((size_t)50 * dim, 0.03f), *hr = malloc((size_t)50 * dim * sizeof(float));
    for (size_t i = 0; i < (size_t)50 * dim; i++) hr[i] = wm_test_bf16_round(h[i]);
    gpu->kv_load_match(gpu, kg, h, 520, 50);
    gpu->kv_read_match(gpu, kg, rg, 520, 50);
    wm_test_check_exact("kv_load_match/read_match", rg, hr, (size_t)50 * dim);
    /* a new store that only gets kv_load_match has a plane too */
    wm_kv *k2 = gpu->kv_new(gpu, 64, dim);
    gpu->kv_load_match(gpu, k2, h, 3, 50);
    gpu->kv_read_match(gpu, k2, rg, 3, 50);
    wm_test_check_exact("kv_load_match (new plane)", rg, hr, (size_t)50 * dim);
    gpu->kv_free(gpu, k2);

    /* kv_move carries the plane */
    float *before = malloc(n * sizeof(float));
    gpu->kv_read_match(gpu, kg, before, 0, rows);
    gpu->kv_move(gpu, kg, 10, 200, 300);
    gpu->kv_read_match(gpu, kg, rg, 0, rows);
    memmove(before + (size_t)10 * dim, before + (size_t)200 * dim, (size_t)300 * dim * sizeof(float));
    wm_test_check_exact("kv_move (match plane)", rg, before, n);

    check_failure("match plane");
    cpu->kv_free(cpu, kc), gpu->kv_free(gpu, kg);
    cpu->free(cpu, xc), gpu->free(gpu, xg);
    free(k), free(v), free(x), free(rc), free(rg), free(h), free(hr), free(before);
}

/* ---- kv_match ---- */

static void check_kv_match(int64_t nc, int64_t nq, int dim) {
    /* candidates: random directions; queries: a candidate plus a little noise, so the best is clear */
    const int64_t c0 = 5, q0 = c0 + nc + 3, rows = q0 + nq + 2;
    float *x = host_randn((size_t)rows * dim, 1.0f);
    int64_t *planted = malloc((size_t)nq * sizeof(int64_t));
    for (int64_t i = 0; i < nq; i++) {
        planted[i] = c0 + (int64_t)(uniform() * (double)nc) % nc;
        for (int c = 0; c < dim; c++)
            x[(size_t)(q0 + i) * dim + c] = x[(size_t)planted[i] * dim + c] + 0.15f * normal();
    }
    float *z = calloc((size_t)rows * dim, sizeof(float));
    wm_kv *kc = store(cpu, rows, dim, z, z, NULL), *kg = store(gpu, rows, dim, z, z, NULL);
    float *xc = wm_test_dev(cpu, x, (size_t)rows * dim), *xg = wm_test_dev(gpu, x, (size_t)rows * dim);
    cpu->kv_write_match(cpu, kc, 0, xc, rows);
    gpu->kv_write_match(gpu, kg, 0, xg, rows);
    int64_t *bc = malloc((size_t)nq * 8), *bg = malloc((size_t)nq * 8);
    float *sc = malloc((size_t)nq * 4), *sg = malloc((size_t)nq * 4);
    cpu->kv_match(cpu, kc, q0, nq, c0, nc, bc, sc);
    gpu->kv_match(gpu, kg, q0, nq, c0, nc, bg, sg);
    /* GPU sim = fp32 dot of the stored (bf16) rows */
    float *mg = malloc((size_t)rows * dim * sizeof(float));
    gpu->kv_read_match(gpu, kg, mg, 0, rows);
    size_t wrong_best = 0, cpu_disagree = 0;
    double sim_err = 0, sim_cpu = 0;
    for (int64_t i = 0; i < nq; i++) {
        wrong_best += bg[i] != planted[i];
        cpu_disagree += bg[i] != bc[i];
        if (bg[i] >= 0) {
            double s = 0;
            for (int c = 0; c < dim; c++) s += (double)mg[(q0 + i) * dim + c] * mg[bg[i] * dim + c];
            sim_err = fmax(sim_err, fabs(s - sg[i]));
        }
        sim_cpu = fmax(sim_cpu, fabs((double)sg[i] - sc[i]));
    }
    char name[96];
    snprintf(name, sizeof name, "kv_match nc=%lld nq=%lld dim=%d", (long long)nc, (long long)nq, dim);
    const int ok = wrong_best == 0 && cpu_disagree == 0 && sim_err < 1e-4 && sim_cpu < 2e-2;
    printf("%-28s best: %zu not the planted row, %zu differ from the CPU; sim: |gpu - exact| %.2g, |gpu - cpu| "
           "%.2g: %s\n",
           name, wrong_best, cpu_disagree, sim_err, sim_cpu, ok ? "ok" : "MISMATCH");
    if (!ok) wm_test_failures++;
    /* no candidates */
    gpu->kv_match(gpu, kg, q0, 3, c0, 0, bg, sg);
    CHECK(bg[0] == -1 && bg[2] == -1);
    check_failure(name);
    cpu->kv_free(cpu, kc), gpu->kv_free(gpu, kg);
    cpu->free(cpu, xc), gpu->free(gpu, xg);
    free(x), free(z), free(planted), free(bc), free(bg), free(sc), free(sg), free(mg);
}

/* More scores than the 256 MB tile: planted exact copies in both column tiles, GPU alone (a CPU
 * reference at this size takes too long). dim 64: random unit rows are far from each other. */
static void check_kv_match_tiled(void) {
    const int dim = 64;
    const int64_t nc = 70000, nq = 1000, q0 = nc, rows = nc + nq;
    float *x = host_randn((size_t)rows * dim, 1.0f);
    int64_t *planted = malloc((size_t)nq * 8);
    for (int64_t i = 0; i < nq; i++) {
        planted[i] = i % 2 ? 68000 + i : i * 37; /* second column tile (>= 67108) and first */
        memcpy(x + (size_t)(q0 + i) * dim, x + (size_t)planted[i] * dim, (size_t)dim * sizeof(float));
    }
    wm_kv *kg = gpu->kv_new(gpu, rows, dim);
    float *xg = wm_test_dev(gpu, x, (size_t)rows * dim);
    gpu->kv_write_match(gpu, kg, 0, xg, rows);
    int64_t *bg = malloc((size_t)nq * 8);
    float *sg = malloc((size_t)nq * 4);
    gpu->kv_match(gpu, kg, q0, nq, 0, nc, bg, sg);
    size_t wrong = 0;
    double sim_lo = 2;
    for (int64_t i = 0; i < nq; i++) {
        wrong += bg[i] != planted[i];
        sim_lo = fmin(sim_lo, sg[i]);
    }
    printf("%-28s %zu of %lld not the planted copy, min sim %.4f: %s\n", "kv_match tiled nc=70000", wrong,
           (long long)nq, sim_lo, wrong == 0 && sim_lo > 0.98 ? "ok" : "MISMATCH");
    if (wrong || !(sim_lo > 0.98)) wm_test_failures++;
    check_failure("kv_match tiled");
    gpu->kv_free(gpu, kg), gpu->free(gpu, xg);
    free(x), free(planted), free(bg), free(sg);
}

/* ---- kv_merge, kv_compact ---- */

static void test_merge_compact(void) {
    const int64_t rows = 700;
    const int dim = 1536;
    const size_t n = (size_t)rows * dim;
    float *k = host_randn(n, 1.0f), *v = host_randn(n, 1.0f), *x = host_randn(n, 1.0f);
    to_bf16(k, n), to_bf16(v, n);
    float *bias = malloc(rows * sizeof(float));
    for (int64_t i = 0; i < rows; i++) bias[i] = logf(1.0f + (float)(i % 7));
    wm_kv *kc = store(cpu, rows, dim, k, v, bias), *kg = store(gpu, rows, dim, k, v, bias);
    float *xc = wm_test_dev(cpu, x, n), *xg = wm_test_dev(gpu, x, n);
    cpu->kv_write_match(cpu, kc, 0, xc, rows);
    gpu->kv_write_match(gpu, kg, 0, xg, rows);

    /* merge: dst even rows < 400, src odd rows >= 401 */
    const int64_t m = 150;
    int64_t *dst = malloc(m * 8), *src = malloc(m * 8);
    float *a = malloc(m * 4), *b = malloc(m * 4);
    for (int64_t i = 0; i < m; i++) {
        dst[i] = 2 * i, src[i] = 401 + 2 * i;
        a[i] = (float)(i % 4 + 1) / (float)(i % 4 + 2), b[i] = 1.0f / (float)(i % 4 + 2);
    }
    cpu->kv_merge(cpu, kc, dst, src, a, b, m);
    gpu->kv_merge(gpu, kg, dst, src, a, b, m);
    float *kcr = malloc(n * 4), *vcr = malloc(n * 4), *kgr = malloc(n * 4), *vgr = malloc(n * 4);
    cpu->kv_read(cpu, kc, kcr, vcr, 0, rows);
    gpu->kv_read(gpu, kg, kgr, vgr, 0, rows);
    wm_test_compare("kv_merge (v)", vgr, vcr, n, 1e-2f, 8e-3f);
    wm_test_check_exact("kv_merge (k unchanged)", kgr, k, n);

    /* compact: the first 20 rows stay, then about 60% of the rest */
    int64_t *keep = malloc(rows * 8), nk = 0;
    for (int64_t i = 0; i < rows; i++)
        if (i < 20 || uniform() < 0.6) keep[nk++] = i;
    float *mbefore = malloc(n * 4), *mc = malloc(n * 4), *mg = malloc(n * 4);
    float *bc = malloc(rows * 4), *bgp = malloc(rows * 4), *bexp = malloc(rows * 4);
    gpu->kv_read_match(gpu, kg, mbefore, 0, rows);
    float *kexp = malloc(n * 4), *vexp = malloc(n * 4), *mexp = malloc(n * 4);
    for (int64_t i = 0; i < nk; i++) {
        memcpy(kexp + i * dim, kgr + keep[i] * dim, (size_t)dim * 4);
        memcpy(vexp + i * dim, vgr + keep[i] * dim, (size_t)dim * 4);
        memcpy(mexp + i * dim, mbefore + keep[i] * dim, (size_t)dim * 4);
        bexp[i] = bias[keep[i]];
    }
    cpu->kv_compact(cpu, kc, keep, nk);
    gpu->kv_compact(gpu, kg, keep, nk);
    const size_t nn = (size_t)nk * dim;
    cpu->kv_read(cpu, kc, kcr, vcr, 0, nk);
    gpu->kv_read(gpu, kg, kgr, vgr, 0, nk);
    wm_test_check_exact("kv_compact (k)", kgr, kexp, nn);
    wm_test_check_exact("kv_compact (v)", vgr, vexp, nn);
    wm_test_check_exact("kv_compact (k) vs cpu", kgr, kcr, nn);
    wm_test_compare("kv_compact (v) vs cpu", vgr, vcr, nn, 1e-2f, 8e-3f);
    cpu->kv_read_match(cpu, kc, mc, 0, nk);
    gpu->kv_read_match(gpu, kg, mg, 0, nk);
    wm_test_check_exact("kv_compact (match)", mg, mexp, nn);
    wm_test_compare("kv_compact (match) vs cpu", mg, mc, nn, 4e-4f, 8e-3f);
    cpu->kv_get_bias(cpu, kc, bc, 0, nk);
    gpu->kv_get_bias(gpu, kg, bgp, 0, nk);
    wm_test_check_exact("kv_compact (bias)", bgp, bexp, (size_t)nk);
    wm_test_check_exact("kv_compact (bias) vs cpu", bgp, bc, (size_t)nk);

    /* a block shift: rows 300.. -> 0.. (every destination overlaps a source) */
    int64_t nk2 = nk - 100;
    for (int64_t i = 0; i < nk2; i++) keep[i] = 100 + i;
    for (int64_t i = 0; i < nk2; i++) memcpy(kexp + i * dim, kgr + (100 + i) * dim, (size_t)dim * 4);
    gpu->kv_compact(gpu, kg, keep, nk2);
    gpu->kv_read(gpu, kg, kgr, vgr, 0, nk2);
    wm_test_check_exact("kv_compact shift (k)", kgr, kexp, (size_t)nk2 * dim);

    check_failure("merge/compact");
    cpu->kv_free(cpu, kc), gpu->kv_free(gpu, kg);
    cpu->free(cpu, xc), gpu->free(gpu, xg);
    free(k), free(v), free(x), free(bias), free(dst), free(src), free(a), free(b), free(kcr), free(vcr), free(kgr),
        free(vgr), free(keep), free(mbefore), free(mc), free(mg), free(bc), free(bgp), free(bexp), free(kexp),
        free(vexp), free(mexp);
}

/* ---- LSH buckets ---- */

static void check_lsh(int D, int bits, int tables, int quantized) {
#ifdef WM_HAVE_CUDA
    const int64_t nvec = 20000;
    const int np = bits * tables;
    float *proj = quantized ? proj_quant(np, D) : host_randn((size_t)np * D, 1.0f);
    float *x = quantized ? host_quant((size_t)nvec * D, 1.0f) : host_randn((size_t)nvec * D, 1.0f);
    if (!quantized) to_bf16(x, (size_t)nvec * D);
    for (int d = 0; d < D; d++) x[d] = 0.0f; /* vector 0: every projection is 0 -> every bit set */
    wm_lsh *lc = cpu->lsh_new(cpu, D, bits, tables, proj), *lg = gpu->lsh_new(gpu, D, bits, tables, proj);
    CHECK(lc && lg);
    if (!lc || !lg) return;
    uint8_t *bc = malloc((size_t)nvec * tables), *bg = malloc((size_t)nvec * tables);
    CHECK(wm_cpu_lsh_buckets(lc, nvec, x, D, bc) == 0);
    /* GPU: from fp32 (rounded to bf16 by the kernel) and from bf16 bits */
    float *xg = wm_test_dev(gpu, x, (size_t)nvec * D);
    float *codes = wm_test_dev(gpu, NULL, ((size_t)nvec * tables + 3) / 4);
    uint16_t *xb = malloc((size_t)nvec * D * 2);
    for (size_t i = 0; i < (size_t)nvec * D; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        xb[i] = (uint16_t)(u >> 16); /* x is bf16-exact */
    }
    float *xbg = wm_test_dev(gpu, (const float *)xb, (size_t)nvec * D / 2);
    size_t bad[2] = {0, 0}, bad_big[2] = {0, 0};
    for (int pass = 0; pass < 2; pass++) {
        CHECK(wm_cu_lsh_hash(gpu, lg, (uint8_t *)codes, pass ? (const void *)xbg : (const void *)xg, !pass, nvec));
        gpu->download(gpu, (float *)bg, codes, ((size_t)nvec * tables) / 4);
        if (((size_t)nvec * tables) % 4) { /* the tail bytes */
            float t;
            gpu->download(gpu, &t, codes + ((size_t)nvec * tables) / 4, 1);
            memcpy(bg + ((size_t)nvec * tables) / 4 * 4, &t, ((size_t)nvec * tables) % 4);
        }
        for (int64_t i = 0; i < nvec; i++)
            for (int t = 0; t < tables; t++) {
                const uint8_t diff = bc[i * tables + t] ^ bg[i * tables + t];
                if (!diff) continue;
                bad[pass]++;
                /* a differing bit must be a projection within rounding of 0 */
                for (int b = 0; b < bits; b++) {
                    if (!((diff >> b) & 1)) continue;
                    const float *p = proj + (size_t)(t * bits + b) * D;
                    double s = 0, sa = 0;
                    for (int d = 0; d < D; d++) s += (double)p[d] * x[i * D + d], sa += fabs((double)p[d] * x[i * D + d]);
                    if (fabs(s) > 1e-4 * sa) bad_big[pass]++;
                }
            }
    }
    int all_set = 1;
    for (int t = 0; t < tables; t++) all_set &= bg[t] == (uint8_t)((1u << bits) - 1);
    char name[96];
    snprintf(name, sizeof name, "lsh D=%d %dx%d%s", D, bits, tables, quantized ? " (exact data)" : "");
    const int ok = bad_big[0] == 0 && bad_big[1] == 0 && (!quantized || (bad[0] == 0 && bad[1] == 0)) && all_set &&
                   bad[0] * 1000 <= (size_t)nvec * tables;
    printf("%-28s n=%-8lld buckets differing from the CPU: %zu (fp32 in), %zu (bf16 in), of them not near 0: %zu, "
           "%zu; zero vector -> all bits: %s: %s\n",
           name, (long long)nvec, bad[0], bad[1], bad_big[0], bad_big[1], all_set ? "yes" : "NO", ok ? "ok" : "MISMATCH");
    if (!ok) wm_test_failures++;
    check_failure(name);
    cpu->lsh_free(cpu, lc), gpu->lsh_free(gpu, lg);
    gpu->free(gpu, xg), gpu->free(gpu, codes), gpu->free(gpu, xbg);
    free(proj), free(x), free(bc), free(bg), free(xb);
#else
    (void)D, (void)bits, (void)tables, (void)quantized;
#endif
}

/* ---- AnnSA ---- */

static void annsa_on(wm_backend *be, float *out_host, const float *q, const float *k, const float *v,
                     const float *bias, int64_t kv_rows, int64_t n_cache, int Mq, int H, int D, const wm_lsh *lsh) {
    const int dim = H * D;
    wm_kv *kv = store(be, kv_rows, dim, k, v, bias);
    float *qd = wm_test_dev(be, q, (size_t)Mq * dim), *od = wm_test_dev(be, NULL, (size_t)Mq * dim);
    be->attention_annsa(be, od, qd, kv, n_cache, Mq, H, D, 1.0f / sqrtf((float)D), lsh);
    be->download(be, out_host, od, (size_t)Mq * dim);
    be->kv_free(be, kv);
    be->free(be, qd), be->free(be, od);
}

static void check_annsa(int Mq, int64_t n_cache, int H, int D, int bits, int tables, int with_bias) {
    const int dim = H * D;
    const int64_t kv_rows = n_cache + Mq + 37; /* rows past the chunk must not take part */
    const size_t nq = (size_t)Mq * dim, nk = (size_t)kv_rows * dim;
    float *q = host_quant(nq, 1.0f), *k = host_quant(nk, 1.0f), *v = host_quant(nk, 1.0f);
    for (size_t i = (size_t)(n_cache + Mq) * dim; i < nk; i++) k[i] = 1e4f, v[i] = 1e4f;
    float *bias = NULL;
    if (with_bias) {
        bias = malloc(kv_rows * sizeof(float));
        for (int64_t i = 0; i < kv_rows; i++) bias[i] = logf(1.0f + (float)(i % 5));
    }
    float *proj = proj_quant(bits * tables, D);
    wm_lsh *lc = cpu->lsh_new(cpu, D, bits, tables, proj), *lg = gpu->lsh_new(gpu, D, bits, tables, proj);
    float *ref = malloc(nq * 4), *got = malloc(nq * 4);
    double cc[4], cg[4];
    cpu->lsh_take_counts(cpu, cc), gpu->lsh_take_counts(gpu, cg); /* reset */
    annsa_on(cpu, ref, q, k, v, bias, kv_rows, n_cache, Mq, H, D, lc);
    annsa_on(gpu, got, q, k, v, bias, kv_rows, n_cache, Mq, H, D, lg);
    cpu->lsh_take_counts(cpu, cc), gpu->lsh_take_counts(gpu, cg);
    char name[128];
    snprintf(name, sizeof name, "annsa D=%d H=%d Mq=%d nc=%lld %dx%d%s", D, H, Mq, (long long)n_cache, bits, tables,
             with_bias ? " +b" : "");
    wm_test_compare(name, got, ref, nq, 1e-2f, 1e-2f);
    const int same = cc[0] == cg[0] && cc[1] == cg[1] && cg[2] == 0 && cg[3] == 0;
    printf("  density: cuda %.0f/%.0f (%.1f%%), cpu %.0f/%.0f: %s\n", cg[0], cg[1], 100.0 * cg[0] / fmax(cg[1], 1),
           cc[0], cc[1], same ? "ok" : "MISMATCH");
    if (!same) wm_test_failures++;
    check_failure(name);
    cpu->lsh_free(cpu, lc), gpu->lsh_free(gpu, lg);
    free(q), free(k), free(v), free(bias), free(proj), free(ref), free(got);
}

/* One bucket (a zero projection: every bit set for every vector): no reordering, every block
 * attended; the result must be bit-identical to `attention` on the same backend. */
static void check_annsa_identity(int Mq, int64_t n_cache, int H, int D, int with_bias) {
    const int dim = H * D;
    const int64_t kv_rows = n_cache + Mq + 5;
    const size_t nq = (size_t)Mq * dim, nk = (size_t)kv_rows * dim;
    float *q = host_randn(nq, 2.0f), *k = host_randn(nk, 1.0f), *v = host_randn(nk, 1.0f);
    float *bias = NULL;
    if (with_bias) {
        bias = malloc(kv_rows * sizeof(float));
        for (int64_t i = 0; i < kv_rows; i++) bias[i] = logf(1.0f + (float)(i % 5));
    }
    float *proj = calloc((size_t)3 * D, sizeof(float));
    wm_lsh *lg = gpu->lsh_new(gpu, D, 3, 1, proj);
    wm_kv *kv = store(gpu, kv_rows, dim, k, v, bias);
    float *qd = wm_test_dev(gpu, q, nq), *o1 = wm_test_dev(gpu, NULL, nq), *o2 = wm_test_dev(gpu, NULL, nq);
    double cnt[4];
    gpu->lsh_take_counts(gpu, cnt);
    gpu->attention(gpu, o1, qd, kv, n_cache + Mq, Mq, H, D, 1.0f / sqrtf((float)D));
    gpu->attention_annsa(gpu, o2, qd, kv, n_cache, Mq, H, D, 1.0f / sqrtf((float)D), lg);
    gpu->lsh_take_counts(gpu, cnt);
    float *r1 = wm_test_get(gpu, o1, nq), *r2 = wm_test_get(gpu, o2, nq);
    char name[128];
    snprintf(name, sizeof name, "annsa 1 bucket = attention D=%d Mq=%d nc=%lld%s", D, Mq, (long long)n_cache,
             with_bias ? " +b" : "");
    wm_test_check_exact(name, r2, r1, nq);
    printf("  density %.0f/%.0f\n", cnt[0], cnt[1]);
    CHECK(cnt[0] == cnt[1] && cnt[1] == (double)H * ((Mq + 127) / 128) * ((n_cache + Mq + 127) / 128));
    check_failure(name);
    gpu->kv_free(gpu, kv), gpu->lsh_free(gpu, lg);
    gpu->free(gpu, qd), gpu->free(gpu, o1), gpu->free(gpu, o2);
    free(q), free(k), free(v), free(bias), free(proj), free(r1), free(r2);
}

/* ---- AnnCA ---- */

static void check_annca(int group, int F, int64_t n_rows, int H, int D, int bits, int tables, int with_bias) {
    const int dim = H * D, Mq = group * F;
    const int64_t kv_rows = n_rows + 11;
    const size_t nq = (size_t)Mq * dim, nk = (size_t)kv_rows * dim;
    float *q = host_quant(nq, 1.0f), *k = host_quant(nk, 1.0f), *v = host_quant(nk, 1.0f);
    for (size_t i = (size_t)n_rows * dim; i < nk; i++) k[i] = 1e4f, v[i] = 1e4f;
    float *bias = NULL;
    if (with_bias) {
        bias = malloc(kv_rows * sizeof(float));
        for (int64_t i = 0; i < kv_rows; i++) bias[i] = 0.25f * (float)(i % 3);
    }
    float *proj = proj_quant(bits * tables, D);
    wm_lsh *lc = cpu->lsh_new(cpu, D, bits, tables, proj), *lg = gpu->lsh_new(gpu, D, bits, tables, proj);
    float *ref = malloc(nq * 4), *got = malloc(nq * 4);
    double cc[4], cg[4];
    cpu->lsh_take_counts(cpu, cc), gpu->lsh_take_counts(gpu, cg);
    for (int b = 0; b < 2; b++) {
        wm_backend *be = b ? gpu : cpu;
        wm_kv *kv = store(be, kv_rows, dim, k, v, bias);
        float *qd = wm_test_dev(be, q, nq), *od = wm_test_dev(be, NULL, nq);
        be->fill(be, od, NAN, nq); /* every row must be written */
        be->attention_annca(be, od, qd, kv, n_rows, Mq, H, D, 1.0f / sqrtf((float)D), group, b ? lg : lc);
        be->download(be, b ? got : ref, od, nq);
        be->kv_free(be, kv);
        be->free(be, qd), be->free(be, od);
    }
    cpu->lsh_take_counts(cpu, cc), gpu->lsh_take_counts(gpu, cg);
    char name[128];
    snprintf(name, sizeof name, "annca D=%d H=%d g=%dx%d n=%lld %dx%d%s", D, H, F, group, (long long)n_rows, bits,
             tables, with_bias ? " +b" : "");
    wm_test_compare(name, got, ref, nq, 1e-2f, 1e-2f);
    size_t zero_rows = 0;
    for (size_t r = 0; r < (size_t)Mq * H; r++) {
        int z = 1;
        for (int d = 0; d < D && z; d++) z = ref[r * D + d] == 0.0f;
        zero_rows += z;
    }
    const int same = cc[2] == cg[2] && cc[3] == cg[3] && cg[0] == 0 && cg[1] == 0;
    printf("  selected: cuda %.0f/%.0f (%.1f%%), cpu %.0f/%.0f; %zu empty (row, head) outputs: %s\n", cg[2], cg[3],
           100.0 * cg[2] / fmax(cg[3], 1), cc[2], cc[3], zero_rows, same ? "ok" : "MISMATCH");
    if (!same) wm_test_failures++;
    check_failure(name);
    cpu->lsh_free(cpu, lc), gpu->lsh_free(gpu, lg);
    free(q), free(k), free(v), free(bias), free(proj), free(ref), free(got);
}

/* ---- timing (informational) ---- */

static double time_op(int which, float *out, const float *q, const wm_kv *kv, int64_t n_cache, int Mq, int H, int D,
                      const wm_lsh *lsh, int iters) {
    const float scale = 1.0f / sqrtf((float)D);
    double t0 = 0;
    for (int i = -2; i < iters; i++) { /* two warm-up calls */
        if (i == 0) {
            gpu->sync(gpu);
            t0 = wm_now_ms();
        }
        if (which == 0) gpu->attention(gpu, out, q, kv, n_cache + Mq, Mq, H, D, scale);
        else gpu->attention_annsa(gpu, out, q, kv, n_cache, Mq, H, D, scale, lsh);
    }
    gpu->sync(gpu);
    return (wm_now_ms() - t0) / iters;
}

static void time_annsa(void) {
    const int Mq = 4680, H = 12, D = 128, dim = H * D;
    const int64_t n_cache = 28080, rows = n_cache + Mq;
    wm_kv *kv = gpu->kv_new(gpu, rows, dim);
    float *k = wm_test_dev(gpu, NULL, (size_t)rows * dim), *v = wm_test_dev(gpu, NULL, (size_t)rows * dim);
    float *q = wm_test_dev(gpu, NULL, (size_t)Mq * dim), *o = wm_test_dev(gpu, NULL, (size_t)Mq * dim);
    gpu->noise(gpu, k, (size_t)rows * dim, 1, 1), gpu->noise(gpu, v, (size_t)rows * dim, 1, 2);
    gpu->noise(gpu, q, (size_t)Mq * dim, 1, 3);
    gpu->kv_write(gpu, kv, 0, k, v, rows);
    const int iters = 10;
    const double flops = 4.0 * Mq * (double)rows * D * H;
    const double t_dense = time_op(0, o, q, kv, n_cache, Mq, H, D, NULL, iters);
    printf("time attention Mq=%d keys=%lld H=%d D=%d: %.3f ms (%.0f TFLOP/s)\n", Mq, (long long)rows, H, D, t_dense,
           flops / (t_dense * 1e-3) / 1e12);
    const struct {
        int bits, tables, zero;
    } cfg[] = {{3, 1, 1}, {2, 1, 0}, {3, 1, 0}, {4, 1, 0}, {8, 2, 0}};
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        float *proj = cfg[c].zero ? calloc((size_t)cfg[c].bits * cfg[c].tables * D, sizeof(float))
                                  : host_randn((size_t)cfg[c].bits * cfg[c].tables * D, 1.0f);
        wm_lsh *lsh = gpu->lsh_new(gpu, D, cfg[c].bits, cfg[c].tables, proj);
        double cnt[4];
        gpu->lsh_take_counts(gpu, cnt);
        const double t = time_op(1, o, q, kv, n_cache, Mq, H, D, lsh, iters);
        gpu->lsh_take_counts(gpu, cnt);
        const double dens = cnt[0] / fmax(cnt[1], 1);
        printf("time attention_annsa %dx%d%s: %.3f ms at density %.1f%% (%.2fx dense; %.0f effective TFLOP/s)\n",
               cfg[c].bits, cfg[c].tables, cfg[c].zero ? " one bucket" : "", t, 100 * dens, t / t_dense,
               flops * dens / (t * 1e-3) / 1e12);
#ifdef WM_HAVE_CUDA
        { /* where the time goes: one more call with stage events */
            static const char *stage[] = {"hash", "sort", "block list", "gathers", "flash", "scatter"};
            float ms[8];
            wm_cu_accel_profile(1);
            gpu->attention_annsa(gpu, o, q, kv, n_cache, Mq, H, D, 1.0f / sqrtf((float)D), lsh);
            const int ns = wm_cu_accel_profile_read(ms, 8);
            wm_cu_accel_profile(0);
            gpu->lsh_take_counts(gpu, cnt);
            printf("  stages:");
            for (int i = 0; i < ns && i < 6; i++) printf(" %s %.3f", stage[i], ms[i]);
            printf(" ms\n");
        }
#endif
        gpu->lsh_free(gpu, lsh);
        free(proj);
    }
#ifdef WM_HAVE_CUDA
    { /* the hash of the cache keys alone (bf16 in) */
        float *proj = host_randn((size_t)16 * D, 1.0f);
        wm_lsh *lsh = gpu->lsh_new(gpu, D, 8, 2, proj);
        float *codes = wm_test_dev(gpu, NULL, (size_t)n_cache * H * 2 / 4 + 1);
        float *kb = wm_test_dev(gpu, NULL, (size_t)n_cache * dim / 2); /* bf16 bits of the noise in k's first half */
        gpu->copy(gpu, kb, k, (size_t)n_cache * dim / 2);
        double t0 = 0;
        for (int i = -2; i < iters; i++) {
            if (i == 0) gpu->sync(gpu), t0 = wm_now_ms();
            wm_cu_lsh_hash(gpu, lsh, (uint8_t *)codes, kb, 0, n_cache * H);
        }
        gpu->sync(gpu);
        const double t = (wm_now_ms() - t0) / iters;
        printf("time lsh hash 8x2 of %lld bf16 head vectors: %.3f ms (%.0f GB/s, %.1f TFLOP/s fp32)\n",
               (long long)(n_cache * H), t, (double)n_cache * dim * 2 / (t * 1e-3) / 1e9,
               2.0 * n_cache * H * D * 16 / (t * 1e-3) / 1e12);
        gpu->lsh_free(gpu, lsh), gpu->free(gpu, codes), gpu->free(gpu, kb);
        free(proj);
    }
#endif
    check_failure("timing");
    gpu->kv_free(gpu, kv);
    gpu->free(gpu, k), gpu->free(gpu, v), gpu->free(gpu, q), gpu->free(gpu, o);
}

int main(int argc, char **argv) {
    int timings = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--no-timing") == 0) timings = 0;
        if (strcmp(argv[i], "--small") == 0) small_only = 1, timings = 0;
    }
    gpu = wm_backend_cuda_new();
    if (!gpu) {
        printf("SKIP gpu_accel: %s\n", wm_get_error());
        return 77;
    }
    cpu = wm_backend_cpu_new(1);
    if (!cpu) {
        fprintf(stderr, "backend creation failed: %s\n", wm_get_error());
        return 1;
    }
    printf("device: %s\n", gpu->device_name);

    test_match_plane();
    check_kv_match(300, 200, 1536);
    check_kv_match(1000, 37, 64);
    if (!small_only) check_kv_match_tiled();
    test_merge_compact();

    check_lsh(128, 8, 2, 1);
    check_lsh(128, 8, 4, 1);
    check_lsh(64, 5, 3, 1);
    check_lsh(128, 8, 2, 0);
    check_lsh(64, 1, 1, 0);

    check_annsa(300, 1000, 12, 128, 3, 1, 0);
    check_annsa(300, 1000, 12, 128, 8, 2, 1);
    check_annsa(200, 700, 4, 64, 4, 2, 1);
    check_annsa(130, 0, 2, 128, 8, 1, 0);  /* no cache: only the chunk */
    check_annsa(256, 384, 3, 128, 2, 1, 1); /* exact multiples of 128 */
    check_annsa(77, 1500, 4, 64, 1, 1, 0);

    check_annsa_identity(300, 1000, 12, 128, 1);
    check_annsa_identity(200, 700, 4, 64, 0);
    if (!small_only) {
        check_annsa_identity(4680, 28080, 12, 128, 0);
        check_annsa_identity(4680, 28080, 12, 128, 1);
    }

    check_annca(200, 3, 300, 12, 128, 8, 1, 0);
    check_annca(256, 2, 512, 12, 128, 6, 2, 1); /* group a multiple of 128: the output is written in place */
    check_annca(1, 64, 100, 12, 128, 8, 1, 0);  /* one query a group: many empty selections */
    check_annca(100, 3, 77, 4, 64, 4, 3, 1);

    if (timings) time_annsa();

    gpu->destroy(gpu);
    cpu->destroy(cpu);
    return wm_test_finish("gpu_accel");
}
