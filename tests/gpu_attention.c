/* gpu_attention.c - our flash-attention kernels (kernels/flash_attn.cu) against an fp64 CPU
 * reference on the same bf16-rounded inputs: head dims 64 and 128, odd sizes (tails of query and
 * key tiles), additive per-key bias shared across heads and per head, block-sparse key lists with
 * empty rows, padded row strides, launches mixing full and split (64-row) CTAs. Every case runs on
 * each available implementation (the Hopper wgmma kernel as shipped, without its ping-pong
 * schedule, without the last-wave split, with 2 K/V stages; the portable mma.sync kernel), twice
 * (the two runs must agree bit for bit), into an output poisoned with NaN (every element must be
 * written, the padding between rows must stay untouched).
 * Exit 77 (skip) when built without CUDA or when no CUDA device is present. */
#include <stdio.h>

#ifndef WM_HAVE_CUDA
int main(void) {
    printf("SKIP: built without CUDA\n");
    return 77;
}
#else

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flash_attn.cuh"

static int g_fail = 0;

#define CUDA_OK(x)                                                                                  \
    do {                                                                                            \
        cudaError_t e_ = (x);                                                                       \
        if (e_ != cudaSuccess) {                                                                    \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));    \
            exit(1);                                                                                \
        }                                                                                           \
    } while (0)

/* deterministic normal-ish random numbers (xorshift + Box-Muller) */
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd_u32(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 11);
}
static double rnd_unit(void) { return (rnd_u32() + 0.5) / 4294967296.0; } /* (0,1) */
static float rnd_normal(void) {
    double u = rnd_unit(), v = rnd_unit();
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}
static uint16_t f2bf(float f) { /* round to nearest even */
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static float bf2f(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

typedef struct {
    const char *name;
    int D, Mq, Mk, H;
    int bias;      /* 0 none, 1 shared (stride 0), 2 per head */
    int sparse;    /* 0 dense, 1 random block lists (with empty rows and ignored indices) */
    int pad;       /* padded strides (ldq, ldkv as in a fused qkv buffer, ldo) */
    float qk_std;  /* spread of q and k entries (sets how peaked the softmax is) */
} tcase;

/* waits for the device with a watchdog: a hung kernel (a lost barrier arrival) exits with 3 */
static void wait_or_die(const char *what, int impl) {
    struct timespec t0, t;
    timespec_get(&t0, TIME_UTC);
    for (;;) {
        cudaError_t e = cudaStreamQuery(0);
        if (e == cudaSuccess) return;
        if (e != cudaErrorNotReady) {
            fprintf(stderr, "%s impl=%#x: %s\n", what, impl, cudaGetErrorString(e));
            exit(1);
        }
        timespec_get(&t, TIME_UTC);
        if (t.tv_sec - t0.tv_sec > 20) {
            printf("HANG: %s impl=%#x did not finish in 20 s\n", what, impl);
            fflush(stdout);
            exit(3);
        }
    }
}

/* fp64 reference for one case; allowed[h][qb][kb] from the sparse list (NULL = dense) */
static void reference(const tcase *c, const uint16_t *q, int64_t ldq, const uint16_t *k, const uint16_t *v,
                      int64_t ldkv, const float *bias, int64_t bstride, const unsigned char *allowed, int nqb,
                      int nkb, float scale, double *ref /* [Mq][H*D] */) {
    const int D = c->D, H = c->H;
    double *logit = malloc(sizeof(double) * (c->Mk > 0 ? c->Mk : 1));
    float *kf = malloc(sizeof(float) * (size_t)(c->Mk > 0 ? c->Mk : 1) * D);
    float *vf = malloc(sizeof(float) * (size_t)(c->Mk > 0 ? c->Mk : 1) * D);
    float *qf = malloc(sizeof(float) * D);
    for (int h = 0; h < H; h++) {
        for (int j = 0; j < c->Mk; j++)
            for (int d = 0; d < D; d++) {
                kf[(size_t)j * D + d] = bf2f(k[(int64_t)j * ldkv + (int64_t)h * D + d]);
                vf[(size_t)j * D + d] = bf2f(v[(int64_t)j * ldkv + (int64_t)h * D + d]);
            }
        for (int i = 0; i < c->Mq; i++) {
            for (int d = 0; d < D; d++) qf[d] = bf2f(q[(int64_t)i * ldq + (int64_t)h * D + d]);
            double mx = -INFINITY;
            for (int j = 0; j < c->Mk; j++) {
                int ok = 1;
                if (allowed) ok = allowed[((size_t)h * nqb + i / WM_FA_BLOCK_Q) * nkb + j / WM_FA_BLOCK_K];
                if (!ok) {
                    logit[j] = -INFINITY;
                    continue;
                }
                double dot = 0;
                for (int d = 0; d < D; d++) dot += (double)qf[d] * kf[(size_t)j * D + d];
                double x = dot * scale;
                if (bias) x += bias[(int64_t)h * bstride + j];
                logit[j] = x;
                if (x > mx) mx = x;
            }
            double *out = ref + (size_t)i * H * D + (size_t)h * D;
            for (int d = 0; d < D; d++) out[d] = 0;
            if (mx == -INFINITY) continue; /* empty key set -> zeros */
            double sum = 0;
            for (int j = 0; j < c->Mk; j++) {
                if (logit[j] == -INFINITY) continue;
                double p = exp(logit[j] - mx);
                sum += p;
                for (int d = 0; d < D; d++) out[d] += p * vf[(size_t)j * D + d];
            }
            for (int d = 0; d < D; d++) out[d] /= sum;
        }
    }
    free(logit);
    free(kf);
    free(vf);
    free(qf);
}

static int run_case(const tcase *c, const int *impls, int nimpl) {
    const int D = c->D, H = c->H, HD = c->H * c->D;
    const int64_t ldq = c->pad ? HD + 8 : HD;
    const int64_t ldkv = c->pad ? 3 * HD : HD; /* k and v as slices of a fused [Mk, 3*H*D] buffer */
    const int64_t ldo = c->pad ? HD + 6 : HD;
    const float scale = 1.0f / sqrtf((float)D);
    const int Mk1 = c->Mk > 0 ? c->Mk : 1;

    uint16_t *q = malloc(sizeof(uint16_t) * (size_t)c->Mq * ldq);
    uint16_t *kv = malloc(sizeof(uint16_t) * (size_t)Mk1 * (c->pad ? ldkv : 2 * ldkv));
    uint16_t *k = kv, *v = c->pad ? kv + HD : kv + (size_t)Mk1 * ldkv;
    for (size_t i = 0; i < (size_t)c->Mq * ldq; i++) q[i] = f2bf(rnd_normal() * c->qk_std);
    for (size_t i = 0; i < (size_t)Mk1 * (c->pad ? ldkv : 2 * ldkv); i++) kv[i] = f2bf(rnd_normal());
    /* k gets the q spread, v stays N(0,1) */
    for (int j = 0; j < c->Mk; j++)
        for (int d = 0; d < HD; d++) k[(int64_t)j * ldkv + d] = f2bf(rnd_normal() * c->qk_std);

    float *bias = NULL;
    int64_t bstride = 0;
    if (c->bias) {
        bstride = c->bias == 1 ? 0 : c->Mk + 5;
        size_t nb = c->bias == 1 ? (size_t)Mk1 : (size_t)H * bstride;
        bias = malloc(sizeof(float) * nb);
        for (size_t i = 0; i < nb; i++) bias[i] = (float)(log(1 + (rnd_u32() % 7)) + 0.3 * rnd_normal());
    }

    const int nqb = (c->Mq + WM_FA_BLOCK_Q - 1) / WM_FA_BLOCK_Q, nkb = (c->Mk + WM_FA_BLOCK_K - 1) / WM_FA_BLOCK_K;
    int *off = NULL, *idx = NULL;
    unsigned char *allowed = NULL;
    int nidx = 0;
    if (c->sparse) {
        allowed = calloc((size_t)H * nqb * (nkb > 0 ? nkb : 1), 1);
        off = malloc(sizeof(int) * ((size_t)H * nqb + 1));
        idx = malloc(sizeof(int) * ((size_t)H * nqb * (nkb + 2) + 1));
        for (int h = 0; h < H; h++)
            for (int b = 0; b < nqb; b++) {
                const int row = h * nqb + b;
                off[row] = nidx;
                int mode = (row % 5 == 1) ? 0 : 1; /* every 5th list is empty */
                if (!mode) continue;
                /* random subset in random order; plus one ignored (out of range) index */
                for (int kb = nkb - 1; kb >= 0; kb--)
                    if (rnd_u32() % 2 == 0) {
                        idx[nidx++] = kb;
                        allowed[(size_t)row * nkb + kb] = 1;
                    }
                if (row % 3 == 0) idx[nidx++] = nkb + 3;
            }
        off[H * nqb] = nidx;
    }

    double *ref = malloc(sizeof(double) * (size_t)c->Mq * HD);
    reference(c, q, ldq, k, v, ldkv, bias, bstride, allowed, nqb, nkb, scale, ref);

    /* device copies */
    uint16_t *dq, *dkv;
    float *dout, *dbias = NULL;
    int *doff = NULL, *didx = NULL;
    const size_t kv_elems = (size_t)Mk1 * (c->pad ? ldkv : 2 * ldkv);
    CUDA_OK(cudaMalloc((void **)&dq, sizeof(uint16_t) * (size_t)c->Mq * ldq));
    CUDA_OK(cudaMalloc((void **)&dkv, sizeof(uint16_t) * kv_elems));
    CUDA_OK(cudaMalloc((void **)&dout, sizeof(float) * (size_t)c->Mq * ldo));
    CUDA_OK(cudaMemcpy(dq, q, sizeof(uint16_t) * (size_t)c->Mq * ldq, cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemcpy(dkv, kv, sizeof(uint16_t) * kv_elems, cudaMemcpyHostToDevice));
    if (bias) {
        size_t nb = c->bias == 1 ? (size_t)Mk1 : (size_t)H * bstride;
        CUDA_OK(cudaMalloc((void **)&dbias, sizeof(float) * nb));
        CUDA_OK(cudaMemcpy(dbias, bias, sizeof(float) * nb, cudaMemcpyHostToDevice));
    }
    if (c->sparse) {
        CUDA_OK(cudaMalloc((void **)&doff, sizeof(int) * ((size_t)H * nqb + 1)));
        CUDA_OK(cudaMalloc((void **)&didx, sizeof(int) * (size_t)(nidx > 0 ? nidx : 1)));
        CUDA_OK(cudaMemcpy(doff, off, sizeof(int) * ((size_t)H * nqb + 1), cudaMemcpyHostToDevice));
        if (nidx) CUDA_OK(cudaMemcpy(didx, idx, sizeof(int) * nidx, cudaMemcpyHostToDevice));
    }

    wm_fa_args a;
    memset(&a, 0, sizeof a);
    a.q = dq;
    a.ldq = ldq;
    a.k = dkv + (k - kv);
    a.v = dkv + (v - kv);
    a.ldkv = ldkv;
    a.out = dout;
    a.ldo = ldo;
    a.Mq = c->Mq;
    a.Mk = c->Mk;
    a.H = H;
    a.D = D;
    a.scale = scale;
    a.key_bias = dbias;
    a.bias_head_stride = bstride;
    a.kb_offsets = doff;
    a.kb_indices = didx;

    float *got = malloc(sizeof(float) * (size_t)c->Mq * ldo);
    float *got2 = malloc(sizeof(float) * (size_t)c->Mq * ldo);
    int ok_all = 1;
    for (int ii = 0; ii < nimpl; ii++) {
        wm_flash_attn_force(impls[ii]);
        for (int rep = 0; rep < 2; rep++) {
            CUDA_OK(cudaMemset(dout, 0xFF, sizeof(float) * (size_t)c->Mq * ldo)); /* NaN poison */
            if (wm_flash_attn(&a, 0) != 0) {
                printf("  %-34s impl=%#x: wm_flash_attn failed: %s FAIL\n", c->name, impls[ii], wm_flash_attn_error());
                ok_all = 0;
                break;
            }
            CUDA_OK(cudaGetLastError());
            wait_or_die(c->name, impls[ii]);
            CUDA_OK(cudaMemcpy(rep ? got2 : got, dout, sizeof(float) * (size_t)c->Mq * ldo, cudaMemcpyDeviceToHost));
        }
        if (!ok_all) break;
        double maxd = 0, num = 0, den = 0;
        size_t bad = 0, nan = 0, pad_bad = 0;
        for (int i = 0; i < c->Mq; i++) {
            for (int e = 0; e < HD; e++) {
                const float g = got[(size_t)i * ldo + e];
                const double r = ref[(size_t)i * HD + e];
                if (isnan(g)) {
                    nan++;
                    continue;
                }
                const double d = fabs(g - r);
                if (d > maxd) maxd = d;
                if (!(d <= 2e-2)) bad++;
                num += d * d;
                den += r * r;
            }
            for (int64_t e = HD; e < ldo; e++) {
                uint32_t u;
                memcpy(&u, &got[(size_t)i * ldo + e], 4);
                if (u != 0xFFFFFFFFu) pad_bad++;
            }
        }
        const int deterministic = memcmp(got, got2, sizeof(float) * (size_t)c->Mq * ldo) == 0;
        const double rel = den > 0 ? sqrt(num / den) : sqrt(num);
        const int ok = !bad && !nan && !pad_bad && deterministic && rel < 1e-2;
        printf("  %-34s %-6s %#5x max|diff|=%.2e rel=%.2e%s%s%s %s\n", c->name, wm_flash_attn_last_impl(), impls[ii], maxd, rel,
               nan ? " NaN/unwritten" : "", pad_bad ? " padding-overwritten" : "",
               deterministic ? "" : " NON-DETERMINISTIC", ok ? "ok" : "FAIL");
        if (!ok) ok_all = 0;
    }
    wm_flash_attn_force(WM_FA_IMPL_AUTO);

    cudaFree(dq);
    cudaFree(dkv);
    cudaFree(dout);
    cudaFree(dbias);
    cudaFree(doff);
    cudaFree(didx);
    free(q);
    free(kv);
    free(bias);
    free(off);
    free(idx);
    free(allowed);
    free(ref);
    free(got);
    free(got2);
    return ok_all;
}

/* argument checks: unsupported shapes must fail cleanly */
static void check_rejects(void) {
    wm_fa_args a;
    memset(&a, 0, sizeof a);
    uint16_t *d;
    float *o;
    CUDA_OK(cudaMalloc((void **)&d, 4096));
    CUDA_OK(cudaMalloc((void **)&o, 4096));
    a.q = a.k = a.v = d;
    a.out = o;
    a.Mq = a.Mk = 4;
    a.H = 1;
    a.D = 96;
    a.ldq = a.ldkv = a.ldo = 96;
    a.scale = 0.1f;
    int r1 = wm_flash_attn(&a, 0); /* D=96 unsupported */
    a.D = 64;
    a.ldq = a.ldkv = a.ldo = 64;
    a.ldq = 60; /* below H*D */
    int r2 = wm_flash_attn(&a, 0);
    a.ldq = 64;
    a.q = d + 1; /* misaligned */
    int r3 = wm_flash_attn(&a, 0);
    a.q = d;
    a.scale = -1.f;
    int r4 = wm_flash_attn(&a, 0);
    a.scale = 0.1f;
    int r5 = wm_flash_attn(&a, 0); /* valid */
    CUDA_OK(cudaDeviceSynchronize());
    const int ok = r1 == -1 && r2 == -1 && r3 == -1 && r4 == -1 && r5 == 0;
    printf("  argument checks: %s (last error: %s)\n", ok ? "ok" : "FAIL", wm_flash_attn_error());
    if (!ok) g_fail++;
    cudaFree(d);
    cudaFree(o);
}

int main(int argc, char **argv) {
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        printf("SKIP: no CUDA device\n");
        return 77;
    }
    struct cudaDeviceProp prop;
    CUDA_OK(cudaGetDeviceProperties(&prop, 0));
    const int has_wg = wm_flash_attn_has_wgmma();
    printf("gpu_attention: %s (sm_%d%d), Hopper kernel %s\n", prop.name, prop.major, prop.minor,
           has_wg ? "available" : "not available (portable kernel only)");
    int impls[5], nimpl = 0;
    if (has_wg) {
        impls[nimpl++] = WM_FA_IMPL_WGMMA;
        impls[nimpl++] = WM_FA_IMPL_WGMMA | WM_FA_NO_PINGPONG;
        impls[nimpl++] = WM_FA_IMPL_WGMMA | WM_FA_NO_SPLIT;
        impls[nimpl++] = WM_FA_IMPL_WGMMA | WM_FA_TWO_STAGES;
    }
    impls[nimpl++] = WM_FA_IMPL_MMA;
    const int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;

    static const tcase cases[] = {
        /* name                              D    Mq    Mk   H  bias sparse pad  qk_std */
        {"d64 q1 k1", 64, 1, 1, 2, 0, 0, 0, 1.0f},
        {"d128 q1 k1", 128, 1, 1, 2, 0, 0, 0, 1.0f},
        {"d128 q77 k63", 128, 77, 63, 2, 0, 0, 0, 1.5f},
        {"d64 q77 k65", 64, 77, 65, 3, 0, 0, 0, 1.5f},
        {"d128 q200 k65", 128, 200, 65, 2, 0, 0, 0, 1.5f},
        {"d64 q200 k1000", 64, 200, 1000, 2, 0, 0, 0, 1.5f},
        {"d128 q129 k1000", 128, 129, 1000, 2, 0, 0, 0, 2.0f},
        {"d128 q4680 k40", 128, 4680, 40, 2, 0, 0, 0, 1.5f},
        {"d64 q4680 k130", 64, 4680, 130, 1, 0, 0, 0, 1.5f},
        {"d128 q5 k0 (no keys)", 128, 5, 0, 2, 0, 0, 0, 1.0f},
        {"d128 q300 k777 padded strides", 128, 300, 777, 3, 0, 0, 1, 1.5f},
        {"d64 q130 k500 padded strides", 64, 130, 500, 2, 0, 0, 1, 1.5f},
        {"d128 q130 k1000 bias shared", 128, 130, 1000, 2, 1, 0, 0, 1.5f},
        {"d64 q77 k300 bias per head", 64, 77, 300, 3, 2, 0, 0, 1.5f},
        {"d128 q200 k257 bias per head", 128, 200, 257, 2, 2, 0, 1, 1.5f},
        {"d128 q300 k700 sparse", 128, 300, 700, 2, 0, 1, 0, 1.5f},
        {"d64 q520 k1000 sparse", 64, 520, 1000, 3, 0, 1, 0, 1.5f},
        {"d128 q260 k900 sparse+bias", 128, 260, 900, 2, 2, 1, 1, 1.5f},
        {"d64 q256 k384 sparse+shared bias", 64, 256, 384, 2, 1, 1, 0, 1.5f},
        {"d128 q640 k2048 peaked", 128, 640, 2048, 2, 0, 0, 0, 3.0f},
        /* more than one wave of (query block, head) units: full and split CTAs in one launch */
        {"d128 q4680 k300 h4 bias per head", 128, 4680, 300, 4, 2, 0, 0, 1.5f},
        {"d64 q2000 k700 h9 sparse", 64, 2000, 700, 9, 0, 1, 0, 1.5f},
    };
    const int ncases = (int)(sizeof cases / sizeof cases[0]);
    int passed = 0, run = 0;
    for (int i = 0; i < ncases; i++) {
        if (quick && cases[i].Mq * (double)cases[i].Mk * cases[i].H > 2e6) continue;
        run++;
        if (run_case(&cases[i], impls, nimpl))
            passed++;
        else
            g_fail++;
    }
    check_rejects();
    printf("gpu_attention: %d/%d cases passed (%d skipped by --quick): %s\n", passed, run, ncases - run,
           g_fail ? "FAIL" : "PASS");
    return g_fail ? 1 : 0;
}
#endif
