/* backend_cpu.c - the CPU backend: fp32 host memory, OpenBLAS sgemm, OpenMP loops.
 * This is the readable reference every other backend is compared against, op by op. */
#include "backend.h"
#include "common.h"
#include "cpu_ops.h"
#include "fused_ref.h"
#include "rng.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Loops smaller than this (in elements touched) stay on the calling thread: waking OpenMP workers
 * costs more than it saves, and idle workers spin against OpenBLAS's own threads. */
#define PAR_MIN 65536
#define PAR(work) if ((size_t)(work) >= PAR_MIN)

/* The mutable state of a CPU backend: the byte count of its allocations and the density counters.
 * Nothing else is kept between ops (scratch is malloc'ed per call, OpenBLAS and OpenMP keep their own
 * per-thread state), so a session's fork (cpu_fork) needs only its own copy of these two to run on
 * another thread next to other sessions. */
typedef struct cpu_impl {
    size_t bytes;             /* activations (+ weights, on the model's backend) currently allocated */
    wm_cpu_lsh_counts counts; /* AnnSA/AnnCA density since the last lsh_take_counts */
    const struct cpu_impl *parent; /* a fork: the model's backend (its bytes are the weights); else NULL */
} cpu_impl;

wm_cpu_lsh_counts *wm_cpu_counts(wm_backend *be) { return &((cpu_impl *)be->impl)->counts; }

/* bytes_in_use: a fork's own allocations plus the model backend's (weights, which a fork's session
 * uses), read-only once sessions exist */
static size_t cpu_bytes(wm_backend *be) {
    const cpu_impl *c = be->impl;
    return c->bytes + (c->parent ? c->parent->bytes : 0);
}

static float *cpu_alloc(wm_backend *be, size_t n) {
    size_t bytes = (n ? n : 1) * sizeof(float) + 64;
    /* Linux overcommits: malloc of more than the machine has would "succeed" and the process would be
     * killed later when the pages are touched. Refuse what cannot fit next to what we hold. */
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (n > SIZE_MAX / 8 || (pages > 0 && page > 0 &&
                             bytes + cpu_bytes(be) > (size_t)pages * (size_t)page)) {
        wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of host memory: %zu MB requested, %zu MB held, %zu MB in this machine",
                     bytes >> 20, cpu_bytes(be) >> 20, ((size_t)pages * (size_t)page) >> 20);
        return NULL;
    }
    size_t *p = malloc(bytes);
    if (!p) {
        wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of host memory allocating %zu MB", bytes >> 20);
        return NULL;
    }
    p[0] = bytes; /* size header so bytes_in_use stays exact */
    ((cpu_impl *)be->impl)->bytes += bytes;
    return (float *)(p + 8);
}
static void cpu_free(wm_backend *be, void *ptr) {
    if (!ptr) return;
    size_t *p = (size_t *)ptr - 8;
    ((cpu_impl *)be->impl)->bytes -= p[0];
    free(p);
}
static void cpu_upload(wm_backend *be, float *d, const float *s, size_t n) { memcpy(d, s, n * sizeof(float)); }
static void cpu_copy(wm_backend *be, float *d, const float *s, size_t n) { memmove(d, s, n * sizeof(float)); }
static void cpu_fill(wm_backend *be, float *d, float v, size_t n) {
    for (size_t i = 0; i < n; i++) d[i] = v;
}
static void cpu_sync(wm_backend *be) {}

static wm_weight *cpu_weight_new(wm_backend *be, const float *host, size_t n) {
    wm_weight *w = malloc(sizeof *w);
    if (!w) return NULL;
    w->data = cpu_alloc(be, n);
    if (!w->data) { free(w); return NULL; }
    memcpy(w->data, host, n * sizeof(float));
    w->n = n;
    return w;
}
static void cpu_weight_free(wm_backend *be, wm_weight *w) {
    cpu_free(be, w->data);
    free(w);
}
static const float *cpu_weight_f32(wm_backend *be, const wm_weight *w) { return w->data; }

/* y = x W^T + b. OpenBLAS runs single-threaded (see wm_backend_cpu_new); rows are split across
 * OpenMP threads, each thread one sgemm on its slice. */
static void cpu_linear(wm_backend *be, float *y, const float *x, const wm_weight *W, const wm_weight *b, int M,
                       int K, int N) {
    const int nt = omp_get_max_threads();
    const int parts = ((size_t)M * K * N >= 4u << 20 && M >= 2 * nt) ? nt : 1;
    #pragma omp parallel for schedule(static) if (parts > 1)
    for (int p = 0; p < parts; p++) {
        int r0 = (int)((int64_t)M * p / parts), r1 = (int)((int64_t)M * (p + 1) / parts);
        if (r1 <= r0) continue;
        if (b)
            for (int r = r0; r < r1; r++) memcpy(y + (size_t)r * N, b->data, (size_t)N * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, N, K, 1.0f, x + (size_t)r0 * K, K, W->data, K,
                    b ? 1.0f : 0.0f, y + (size_t)r0 * N, N);
    }
}

static void cpu_gelu_tanh(wm_backend *be, float *x, size_t n);
static void cpu_ffn(wm_backend *be, float *y, const float *x, const wm_weight *W0, const wm_weight *b0,
                    const wm_weight *W2, const wm_weight *b2, int M, int K, int F, int N, float *hidden) {
    cpu_linear(be, hidden, x, W0, b0, M, K, F);
    cpu_gelu_tanh(be, hidden, (size_t)M * F);
    cpu_linear(be, y, hidden, W2, b2, M, F, N);
}

static void cpu_silu(wm_backend *be, float *x, size_t n) {
    #pragma omp parallel for schedule(static) PAR(n)
    for (size_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + expf(-x[i]));
}
static void cpu_gelu_tanh(wm_backend *be, float *x, size_t n) {
    const float c = 0.7978845608028654f; /* sqrt(2/pi) */
    #pragma omp parallel for schedule(static) PAR(n)
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        x[i] = 0.5f * v * (1.0f + tanhf(c * (v + 0.044715f * v * v * v)));
    }
}
static void cpu_relu(wm_backend *be, float *x, size_t n) {
    #pragma omp parallel for schedule(static) PAR(n)
    for (size_t i = 0; i < n; i++) x[i] = x[i] > 0 ? x[i] : 0;
}
static void cpu_clamp(wm_backend *be, float *x, size_t n, float lo, float hi) {
    #pragma omp parallel for schedule(static) PAR(n)
    for (size_t i = 0; i < n; i++) x[i] = x[i] < lo ? lo : (x[i] > hi ? hi : x[i]);
}
static void cpu_axpby(wm_backend *be, float *y, float a, const float *x, float b, size_t n) {
    #pragma omp parallel for schedule(static) PAR(n)
    for (size_t i = 0; i < n; i++) y[i] = a * x[i] + b * y[i];
}
static void cpu_add(wm_backend *be, float *y, const float *x, size_t n) {
    #pragma omp parallel for schedule(static) PAR(n)
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

/* mean and 1/std of one row, two-pass in double-free fp32 like PyTorch's LayerNorm on fp32 */
static void row_stats(const float *x, int C, float eps, float *mean, float *rstd) {
    float s = 0;
    for (int c = 0; c < C; c++) s += x[c];
    float m = s / (float)C, v = 0;
    for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
    *mean = m;
    *rstd = 1.0f / sqrtf(v / (float)C + eps);
}

static void cpu_layernorm_mod(wm_backend *be, float *y, const float *x, int M, int C, float eps, const float *shift,
                              const float *scale, int stride, int rows_per_group) {
    #pragma omp parallel for schedule(static) PAR((size_t)M * C)
    for (int r = 0; r < M; r++) {
        const float *xr = x + (size_t)r * C;
        float *yr = y + (size_t)r * C;
        float m, rs;
        row_stats(xr, C, eps, &m, &rs);
        if (!scale) {
            for (int c = 0; c < C; c++) yr[c] = (xr[c] - m) * rs;
            continue;
        }
        const float *sc = scale + (size_t)(r / rows_per_group) * stride;
        const float *sh = shift + (size_t)(r / rows_per_group) * stride;
        for (int c = 0; c < C; c++) yr[c] = (xr[c] - m) * rs * (1.0f + sc[c]) + sh[c];
    }
}
static void cpu_layernorm_affine(wm_backend *be, float *y, const float *x, int M, int C, float eps,
                                 const wm_weight *w, const wm_weight *b) {
    #pragma omp parallel for schedule(static) PAR((size_t)M * C)
    for (int r = 0; r < M; r++) {
        const float *xr = x + (size_t)r * C;
        float *yr = y + (size_t)r * C;
        float m, rs;
        row_stats(xr, C, eps, &m, &rs);
        for (int c = 0; c < C; c++) yr[c] = (xr[c] - m) * rs * w->data[c] + b->data[c];
    }
}
static void cpu_rmsnorm(wm_backend *be, float *x, int M, int C, float eps, const wm_weight *w) {
    #pragma omp parallel for schedule(static) PAR((size_t)M * C)
    for (int r = 0; r < M; r++) {
        float *xr = x + (size_t)r * C;
        float s = 0;
        for (int c = 0; c < C; c++) s += xr[c] * xr[c];
        float rs = 1.0f / sqrtf(s / (float)C + eps);
        for (int c = 0; c < C; c++) xr[c] = xr[c] * rs * w->data[c];
    }
}

/* 3-D RoPE: angles in float64 (like the reference tables), rotation in fp32. */
static void cpu_rope(wm_backend *be, float *x, int M, int H, int D, int64_t frame0, int gh, int gw) {
    const int dt = D - 4 * (D / 6), dh = 2 * (D / 6);
    const int pt = dt / 2, ph = dh / 2, np = D / 2;
    #pragma omp parallel for schedule(static) PAR((size_t)M * H * D)
    for (int r = 0; r < M; r++) {
        int64_t pos[3] = {frame0 + r / (gh * gw), (r / gw) % gh, r % gw};
        float cs[64], sn[64];
        float *cbuf = cs, *sbuf = sn, *heap = NULL;
        if (np > 64) {
            heap = malloc(2 * (size_t)np * sizeof(float));
            if (!heap) {
                #pragma omp critical
                wm_note_failure(wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of memory in rope"));
                continue;
            }
            cbuf = heap;
            sbuf = heap + np;
        }
        for (int p = 0; p < np; p++) {
            int axis = p < pt ? 0 : (p < pt + ph ? 1 : 2);
            int j = axis == 0 ? p : (axis == 1 ? p - pt : p - pt - ph);
            int adim = axis == 0 ? dt : dh;
            double ang = (double)pos[axis] * pow(10000.0, -(double)(2 * j) / (double)adim);
            cbuf[p] = (float)cos(ang);
            sbuf[p] = (float)sin(ang);
        }
        for (int h = 0; h < H; h++) {
            float *xh = x + (size_t)r * H * D + (size_t)h * D;
            for (int p = 0; p < np; p++) {
                float a = xh[2 * p], b = xh[2 * p + 1];
                xh[2 * p] = a * cbuf[p] - b * sbuf[p];
                xh[2 * p + 1] = a * sbuf[p] + b * cbuf[p];
            }
        }
        free(heap);
    }
}

static void cpu_gated_add(wm_backend *be, float *x, const float *y, int M, int C, const float *gate, int stride,
                          int rows_per_group) {
    #pragma omp parallel for schedule(static) PAR((size_t)M * C)
    for (int r = 0; r < M; r++) {
        const float *g = gate + (size_t)(r / rows_per_group) * stride;
        float *xr = x + (size_t)r * C;
        const float *yr = y + (size_t)r * C;
        for (int c = 0; c < C; c++) xr[c] += yr[c] * g[c];
    }
}

static void cpu_patchify(wm_backend *be, float *patches, const float *lat, int F, int C, int Hh, int Ww, int ph,
                         int pw) {
    const int gh = Hh / ph, gw = Ww / pw, K = C * ph * pw;
    #pragma omp parallel for schedule(static) PAR((size_t)F * Hh * Ww * C)
    for (int t = 0; t < F * gh * gw; t++) {
        int f = t / (gh * gw), i = (t / gw) % gh, j = t % gw;
        float *dst = patches + (size_t)t * K;
        for (int c = 0; c < C; c++)
            for (int di = 0; di < ph; di++)
                for (int dj = 0; dj < pw; dj++)
                    dst[(c * ph + di) * pw + dj] =
                        lat[(((size_t)f * C + c) * Hh + (size_t)(i * ph + di)) * Ww + (size_t)(j * pw + dj)];
    }
}
static void cpu_unpatchify(wm_backend *be, float *lat, const float *tokens, int F, int C, int Hh, int Ww, int ph,
                           int pw) {
    const int gh = Hh / ph, gw = Ww / pw, K = C * ph * pw;
    #pragma omp parallel for schedule(static) PAR((size_t)F * Hh * Ww * C)
    for (int t = 0; t < F * gh * gw; t++) {
        int f = t / (gh * gw), i = (t / gw) % gh, j = t % gw;
        const float *src = tokens + (size_t)t * K;
        for (int di = 0; di < ph; di++)
            for (int dj = 0; dj < pw; dj++)
                for (int c = 0; c < C; c++)
                    lat[(((size_t)f * C + c) * Hh + (size_t)(i * ph + di)) * Ww + (size_t)(j * pw + dj)] =
                        src[(di * pw + dj) * C + c];
    }
}

static void cpu_timestep_sinusoid(wm_backend *be, float *dst, const float *t, int F, int freq_dim) {
    (void)be;
    const int half = freq_dim / 2;
    for (int f = 0; f < F; f++)
        for (int k = 0; k < half; k++) {
            double ang = (double)t[f] * pow(10000.0, -(double)k / (double)half);
            dst[f * freq_dim + k] = (float)cos(ang);
            dst[f * freq_dim + half + k] = (float)sin(ang);
        }
}

static void cpu_noise(wm_backend *be, float *dst, size_t n, uint64_t seed, uint64_t stream) {
    wm_normal_fill(dst, n, seed, stream, 0);
}

static wm_kv *cpu_kv_new(wm_backend *be, int64_t rows, int dim) {
    wm_kv *kv = calloc(1, sizeof *kv);
    if (!kv) return NULL;
    kv->rows = rows;
    kv->dim = dim;
    kv->k = cpu_alloc(be, (size_t)rows * dim);
    kv->v = kv->k ? cpu_alloc(be, (size_t)rows * dim) : NULL;
    if (!kv->v) {
        cpu_free(be, kv->k);
        free(kv);
        return NULL;
    }
    return kv;
}
static void cpu_kv_free(wm_backend *be, wm_kv *kv) {
    if (!kv) return;
    cpu_free(be, kv->k);
    cpu_free(be, kv->v);
    cpu_free(be, kv->bias);
    cpu_free(be, kv->match);
    free(kv);
}
static void cpu_kv_write(wm_backend *be, wm_kv *kv, int64_t row, const float *k, const float *v, int64_t n) {
    memcpy(kv->k + row * kv->dim, k, (size_t)(n * kv->dim) * sizeof(float));
    memcpy(kv->v + row * kv->dim, v, (size_t)(n * kv->dim) * sizeof(float));
}
static void cpu_kv_move(wm_backend *be, wm_kv *kv, int64_t dst, int64_t src, int64_t n) {
    memmove(kv->k + dst * kv->dim, kv->k + src * kv->dim, (size_t)(n * kv->dim) * sizeof(float));
    memmove(kv->v + dst * kv->dim, kv->v + src * kv->dim, (size_t)(n * kv->dim) * sizeof(float));
    if (kv->bias) memmove(kv->bias + dst, kv->bias + src, (size_t)n * sizeof(float));
    if (kv->match)
        memmove(kv->match + dst * kv->dim, kv->match + src * kv->dim, (size_t)(n * kv->dim) * sizeof(float));
}
/* The rotation by the angle difference, in fp32 like `rope`: exact up to rounding because rotations
 * compose (the key was rotated at f, this turns it on by time_shift). */
static void cpu_kv_copy(wm_backend *be, wm_kv *dst, int64_t dst_row, const wm_kv *src, int64_t src_row, int64_t n, int H,
                        int D, int64_t time_shift) {
    const size_t cnt = (size_t)(n * dst->dim);
    memcpy(dst->k + dst_row * dst->dim, src->k + src_row * src->dim, cnt * sizeof(float));
    memcpy(dst->v + dst_row * dst->dim, src->v + src_row * src->dim, cnt * sizeof(float));
    if (time_shift == 0) return;
    const int pt = (D - 4 * (D / 6)) / 2; /* the time axis's pairs come first in every head */
    float *k = dst->k + dst_row * dst->dim;
    for (int p = 0; p < pt; p++) {
        const double ang = (double)time_shift * pow(10000.0, -(double)(2 * p) / (double)(2 * pt));
        const float cs = (float)cos(ang), sn = (float)sin(ang);
        for (int64_t r = 0; r < n; r++)
            for (int h = 0; h < H; h++) {
                float *x = k + (size_t)r * dst->dim + (size_t)h * D + 2 * p;
                const float a = x[0], b = x[1];
                x[0] = a * cs - b * sn;
                x[1] = a * sn + b * cs;
            }
    }
}
static void cpu_kv_set_bias(wm_backend *be, wm_kv *kv, int64_t row, const float *bias, int64_t n) {
    if (!kv->bias) {
        kv->bias = cpu_alloc(be, (size_t)kv->rows);
        if (!kv->bias) {
            wm_note_failure(WM_ERR_OUT_OF_MEMORY);
            return;
        }
        memset(kv->bias, 0, (size_t)kv->rows * sizeof(float));
    }
    memcpy(kv->bias + row, bias, (size_t)n * sizeof(float));
}
static void cpu_kv_get_bias(wm_backend *be, const wm_kv *kv, float *bias, int64_t row, int64_t n) {
    if (kv->bias) memcpy(bias, kv->bias + row, (size_t)n * sizeof(float));
    else memset(bias, 0, (size_t)n * sizeof(float));
}
static void cpu_kv_read(wm_backend *be, const wm_kv *kv, float *k, float *v, int64_t row, int64_t n) {
    memcpy(k, kv->k + row * kv->dim, (size_t)(n * kv->dim) * sizeof(float));
    memcpy(v, kv->v + row * kv->dim, (size_t)(n * kv->dim) * sizeof(float));
}
static void cpu_kv_load(wm_backend *be, wm_kv *kv, const float *k, const float *v, int64_t row, int64_t n) {
    cpu_kv_write(be, kv, row, k, v, n);
}

static void cpu_destroy(wm_backend *be) {
    free(be->impl);
    free(be);
}

/* A session's backend: the same ops (be's table, wrappers included) on a cpu_impl of its own. */
static wm_backend *cpu_fork(wm_backend *be) {
    wm_backend *f = malloc(sizeof *f);
    cpu_impl *c = calloc(1, sizeof *c);
    if (!f || !c) {
        free(f);
        free(c);
        wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of memory forking the CPU backend");
        return NULL;
    }
    const cpu_impl *p = be->impl;
    c->parent = p->parent ? p->parent : p;
    *f = *be;
    f->impl = c;
    f->destroy = cpu_destroy;
    return f;
}

/* "model name" of /proc/cpuinfo, for benchmark records */
static void cpu_model_name(char *dst, size_t n) {
    snprintf(dst, n, "CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        char *c = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && c) {
            c += 2;
            c[strcspn(c, "\n")] = 0;
            snprintf(dst, n, "%s", c);
            break;
        }
    }
    fclose(f);
}

wm_backend *wm_backend_cpu_new(int n_threads) {
    wm_backend *be = calloc(1, sizeof *be);
    cpu_impl *impl = calloc(1, sizeof *impl);
    if (!be || !impl) {
        free(be);
        free(impl);
        wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of memory creating the CPU backend");
        return NULL;
    }
    /* One thread pool: OpenMP splits the work and OpenBLAS runs inside each thread single-threaded.
     * Debian's default OpenBLAS is the pthreads build, whose spinning workers fight OpenMP's. */
    if (n_threads > 0) omp_set_num_threads(n_threads);
    openblas_set_num_threads(1);
    be->name = "cpu";
    be->kind = WM_BACKEND_CPU;
    cpu_model_name(be->device_name, sizeof be->device_name);
    be->impl = impl;
    be->destroy = cpu_destroy;
    be->fork = cpu_fork;
    be->alloc = cpu_alloc;
    be->free = cpu_free;
    be->upload = cpu_upload;
    be->download = cpu_upload;
    be->copy = cpu_copy;
    be->fill = cpu_fill;
    be->sync = cpu_sync;
    be->bytes_in_use = cpu_bytes;
    be->weight_new = cpu_weight_new;
    be->weight_free = cpu_weight_free;
    be->weight_f32 = cpu_weight_f32;
    be->linear = cpu_linear;
    be->ffn = cpu_ffn;
    be->silu = cpu_silu;
    be->gelu_tanh = cpu_gelu_tanh;
    be->relu = cpu_relu;
    be->axpby = cpu_axpby;
    be->add = cpu_add;
    be->layernorm_mod = cpu_layernorm_mod;
    be->layernorm_affine = cpu_layernorm_affine;
    be->rmsnorm = cpu_rmsnorm;
    be->rope = cpu_rope;
    be->gated_add = cpu_gated_add;
    /* the fused sub-layers are their definitions: the CPU has nothing to gain from fusing them */
    be->self_attn_in = wm_ref_self_attn_in;
    be->self_attn = wm_ref_self_attn;
    be->cross_attn = wm_ref_cross_attn;
    be->ffn_block = wm_ref_ffn_block;
    be->kv_new = cpu_kv_new;
    be->kv_free = cpu_kv_free;
    be->kv_write = cpu_kv_write;
    be->kv_move = cpu_kv_move;
    be->kv_copy = cpu_kv_copy;
    be->kv_read = cpu_kv_read;
    be->kv_load = cpu_kv_load;
    be->kv_set_bias = cpu_kv_set_bias;
    be->kv_get_bias = cpu_kv_get_bias;
    be->attention = wm_cpu_attention;
    be->kv_write_match = wm_cpu_kv_write_match;
    be->kv_read_match = wm_cpu_kv_read_match;
    be->kv_load_match = wm_cpu_kv_load_match;
    be->kv_match = wm_cpu_kv_match;
    be->kv_merge = wm_cpu_kv_merge;
    be->kv_compact = wm_cpu_kv_compact;
    be->lsh_new = wm_cpu_lsh_new;
    be->lsh_free = wm_cpu_lsh_free;
    be->attention_annsa = wm_cpu_attention_annsa;
    be->attention_annca = wm_cpu_attention_annca;
    be->lsh_take_counts = wm_cpu_lsh_take_counts;
    be->patchify = cpu_patchify;
    be->unpatchify = cpu_unpatchify;
    be->noise = cpu_noise;
    be->timestep_sinusoid = cpu_timestep_sinusoid;
    be->img_bytes = wm_cpu_img_bytes;
    be->img_from_f32 = wm_cpu_img_from_f32;
    be->img_to_f32 = wm_cpu_img_to_f32;
    be->img_conv = wm_cpu_img_conv;
    be->img_upsample2x = wm_cpu_img_upsample2x;
    be->img_concat = wm_cpu_img_concat;
    be->img_copy = wm_cpu_img_copy;
    be->tanh_clamp = wm_cpu_tanh_clamp;
    be->clamp = cpu_clamp;
    be->to_rgb8 = wm_cpu_to_rgb8;
    return be;
}

#ifndef WM_HAVE_CUDA
wm_backend *wm_backend_cuda_new(void) {
    wm_set_error(WM_ERR_UNSUPPORTED, "this build of wm has no CUDA backend (built without a CUDA compiler)");
    return NULL;
}
int wm_backend_cuda_compiled(void) { return 0; }
#endif
