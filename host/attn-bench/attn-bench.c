/* attn-bench - times wm_flash_attn (kernels/flash_attn.cu) with CUDA events: warm-up, then the
 * median of N timed runs, on q=4680 (3 latent frames of 480x832) against key counts from 3 to 192
 * latent frames, 12 heads, d=128 (+ d=64 at one size), dense, with a per-key bias, and block-sparse
 * at 50% density. TFLOP/s counts 4*Mq*Mk*H*D (the dense products; for the sparse run the key
 * blocks actually visited). One JSON object per line on stdout (and in --out FILE).
 *
 *   attn-bench [--reps N] [--impl all|auto|wgmma|nopingpong|nosplit|2stage|2stage-nosplit|mma] [--quick] [--out FILE] */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flash_attn.cuh"

#define CUDA_OK(x)                                                                                  \
    do {                                                                                            \
        cudaError_t e_ = (x);                                                                       \
        if (e_ != cudaSuccess) {                                                                    \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));    \
            exit(1);                                                                                \
        }                                                                                           \
    } while (0)

static uint64_t g_rng = 0x2545F4914F6CDD1Dull;
static uint32_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 16);
}
static uint16_t f2bf(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static float urand(void) { return (rnd() + 0.5f) / 4294967296.0f * 2.f - 1.f; }

/* fills n bf16 values: a random 8M-element block on the host, replicated on the device */
static void fill_bf16(uint16_t *dst, size_t n, float amp) {
    const size_t blk = (size_t)8 << 20;
    uint16_t *h = malloc(sizeof(uint16_t) * blk);
    for (size_t i = 0; i < blk; i++) h[i] = f2bf(urand() * amp);
    size_t first = n < blk ? n : blk;
    CUDA_OK(cudaMemcpy(dst, h, first * 2, cudaMemcpyHostToDevice));
    for (size_t o = first; o < n; o += first) {
        size_t c = n - o < first ? n - o : first;
        CUDA_OK(cudaMemcpy(dst + o, dst, c * 2, cudaMemcpyDeviceToDevice));
    }
    free(h);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

static const char *g_gpu = "?";
static FILE *g_out = NULL;

static void emit(const char *line) {
    fputs(line, stdout);
    fflush(stdout);
    if (g_out) {
        fputs(line, g_out);
        fflush(g_out);
    }
}

/* times one configuration; returns median ms (or -1 on failure) */
static double bench(const char *impl_name, int impl, wm_fa_args *a, int reps, double flops, double density,
                    const char *variant) {
    wm_flash_attn_force(impl);
    cudaEvent_t e0[64], e1[64];
    if (reps > 64) reps = 64;
    for (int i = 0; i < reps; i++) {
        CUDA_OK(cudaEventCreate(&e0[i]));
        CUDA_OK(cudaEventCreate(&e1[i]));
    }
    const int warm = flops > 2e12 ? 2 : 5;
    for (int i = 0; i < warm; i++)
        if (wm_flash_attn(a, 0) != 0) {
            fprintf(stderr, "attn-bench: %s: %s\n", impl_name, wm_flash_attn_error());
            wm_flash_attn_force(WM_FA_IMPL_AUTO);
            return -1;
        }
    CUDA_OK(cudaDeviceSynchronize());
    for (int i = 0; i < reps; i++) {
        CUDA_OK(cudaEventRecord(e0[i], 0));
        wm_flash_attn(a, 0);
        CUDA_OK(cudaEventRecord(e1[i], 0));
    }
    CUDA_OK(cudaDeviceSynchronize());
    CUDA_OK(cudaGetLastError());
    float ms[64];
    for (int i = 0; i < reps; i++) {
        CUDA_OK(cudaEventElapsedTime(&ms[i], e0[i], e1[i]));
        cudaEventDestroy(e0[i]);
        cudaEventDestroy(e1[i]);
    }
    qsort(ms, reps, sizeof(float), cmp_float);
    const double med = reps % 2 ? ms[reps / 2] : 0.5 * (ms[reps / 2 - 1] + ms[reps / 2]);
    char line[768];
    snprintf(line, sizeof line,
             "{\"bench\":\"attention\",\"impl\":\"%s\",\"kernel\":\"%s\",\"variant\":\"%s\",\"gpu\":\"%s\","
             "\"q\":%d,\"k\":%d,\"h\":%d,\"d\":%d,\"bias\":%d,\"density\":%.4f,\"reps\":%d,"
             "\"ms_median\":%.4f,\"ms_min\":%.4f,\"tflops\":%.1f}\n",
             impl_name, wm_flash_attn_last_impl(), variant, g_gpu, a->Mq, a->Mk, a->H, a->D, a->key_bias != NULL,
             density, reps, med, ms[0], flops / (med * 1e-3) / 1e12);
    emit(line);
    wm_flash_attn_force(WM_FA_IMPL_AUTO);
    return med;
}

int main(int argc, char **argv) {
    int reps = 15, quick = 0;
    const char *impl_arg = "all", *out_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--impl") && i + 1 < argc)
            impl_arg = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc)
            out_path = argv[++i];
        else if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else {
            fprintf(stderr, "usage: attn-bench [--reps N] [--impl all|auto|wgmma|nopingpong|nosplit|2stage|2stage-nosplit|mma] [--quick] [--out FILE]\n");
            return 2;
        }
    }
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        fprintf(stderr, "attn-bench: no CUDA device\n");
        return 77;
    }
    static struct cudaDeviceProp prop;
    CUDA_OK(cudaGetDeviceProperties(&prop, 0));
    g_gpu = prop.name;
    if (out_path && !(g_out = fopen(out_path, "w"))) {
        perror(out_path);
        return 1;
    }

    static const struct {
        const char *name, *group;
        int impl, hopper;
    } all_impls[] = {
        {"wm-wgmma", "wgmma", WM_FA_IMPL_WGMMA, 1},
        {"wm-wgmma-nopingpong", "nopingpong", WM_FA_IMPL_WGMMA | WM_FA_NO_PINGPONG, 1},
        {"wm-wgmma-nosplit", "nosplit", WM_FA_IMPL_WGMMA | WM_FA_NO_SPLIT, 1},
        {"wm-wgmma-2stage", "2stage", WM_FA_IMPL_WGMMA | WM_FA_TWO_STAGES, 1},
        {"wm-wgmma-2stage-nosplit", "2stage-nosplit", WM_FA_IMPL_WGMMA | WM_FA_TWO_STAGES | WM_FA_NO_SPLIT, 1},
        {"wm-mma", "mma", WM_FA_IMPL_MMA, 0},
        {"wm-auto", "auto", WM_FA_IMPL_AUTO, 0},
    };
    struct {
        const char *name;
        int impl;
    } impls[8];
    int nimpl = 0;
    const int has_wg = wm_flash_attn_has_wgmma();
    for (size_t i = 0; i < sizeof all_impls / sizeof all_impls[0]; i++) {
        const int in_all = strcmp(all_impls[i].group, "auto") != 0;
        if (!(strcmp(impl_arg, all_impls[i].group) == 0 || (in_all && strcmp(impl_arg, "all") == 0))) continue;
        if (all_impls[i].hopper && !has_wg) continue;
        impls[nimpl].name = all_impls[i].name;
        impls[nimpl++].impl = all_impls[i].impl;
    }
    fprintf(stderr, "attn-bench: %s, %d SMs, Hopper kernel %s\n", prop.name, prop.multiProcessorCount,
            has_wg ? "available" : "unavailable");

    const int Mq = 4680, H = 12;
    static const int ks_full[] = {4680, 9360, 18720, 32760, 65520, 150000, 300000};
    static const int ks_quick[] = {4680, 32760};
    const int *ks = quick ? ks_quick : ks_full;
    const int nk = quick ? 2 : 7;
    const int kmax = ks[nk - 1];

    /* one buffer set of the largest size, heads interleaved in the row like the model's */
    const int64_t ld = (int64_t)H * 128;
    uint16_t *dq, *dk, *dv;
    float *dout, *dbias;
    CUDA_OK(cudaMalloc((void **)&dq, sizeof(uint16_t) * Mq * ld));
    CUDA_OK(cudaMalloc((void **)&dk, sizeof(uint16_t) * (size_t)kmax * ld));
    CUDA_OK(cudaMalloc((void **)&dv, sizeof(uint16_t) * (size_t)kmax * ld));
    CUDA_OK(cudaMalloc((void **)&dout, sizeof(float) * Mq * ld));
    CUDA_OK(cudaMalloc((void **)&dbias, sizeof(float) * (size_t)H * kmax));
    fill_bf16(dq, (size_t)Mq * ld, 2.0f);
    fill_bf16(dk, (size_t)kmax * ld, 2.0f);
    fill_bf16(dv, (size_t)kmax * ld, 1.0f);
    {
        float *hb = malloc(sizeof(float) * (size_t)H * kmax);
        for (size_t i = 0; i < (size_t)H * kmax; i++) hb[i] = logf(1.f + (float)(rnd() % 5));
        CUDA_OK(cudaMemcpy(dbias, hb, sizeof(float) * (size_t)H * kmax, cudaMemcpyHostToDevice));
        free(hb);
    }

    for (int ii = 0; ii < nimpl; ii++) {
        for (int D = 128; D >= 64; D -= 64) {
            for (int ki = 0; ki < nk; ki++) {
                const int Mk = ks[ki];
                if (D == 64 && Mk != 32760) continue; /* d=64 at one size */
                for (int bias = 0; bias <= 1; bias++) {
                    wm_fa_args a;
                    memset(&a, 0, sizeof a);
                    a.q = dq;
                    a.ldq = (int64_t)H * D;
                    a.k = dk;
                    a.v = dv;
                    a.ldkv = (int64_t)H * D;
                    a.out = dout;
                    a.ldo = (int64_t)H * D;
                    a.Mq = Mq;
                    a.Mk = Mk;
                    a.H = H;
                    a.D = D;
                    a.scale = 1.f / sqrtf((float)D);
                    a.key_bias = bias ? dbias : NULL;
                    a.bias_head_stride = bias ? kmax : 0;
                    const double flops = 4.0 * Mq * (double)Mk * H * D;
                    bench(impls[ii].name, impls[ii].impl, &a, reps, flops, 1.0, "dense");
                }
            }
        }
    }

    /* block-sparse at 50% density (every other key block, per head and query block), k=32760 */
    {
        const int Mk = 32760, nqb = (Mq + WM_FA_BLOCK_Q - 1) / WM_FA_BLOCK_Q, nkb = (Mk + WM_FA_BLOCK_K - 1) / WM_FA_BLOCK_K;
        int *off = malloc(sizeof(int) * (H * nqb + 1)), *idx = malloc(sizeof(int) * H * nqb * nkb);
        int n = 0;
        double keys = 0;
        for (int r = 0; r < H * nqb; r++) {
            off[r] = n;
            for (int kb = r & 1; kb < nkb; kb += 2) {
                idx[n++] = kb;
                int kk = Mk - kb * WM_FA_BLOCK_K;
                keys += kk < WM_FA_BLOCK_K ? kk : WM_FA_BLOCK_K;
            }
        }
        off[H * nqb] = n;
        int *doff, *didx;
        CUDA_OK(cudaMalloc((void **)&doff, sizeof(int) * (H * nqb + 1)));
        CUDA_OK(cudaMalloc((void **)&didx, sizeof(int) * n));
        CUDA_OK(cudaMemcpy(doff, off, sizeof(int) * (H * nqb + 1), cudaMemcpyHostToDevice));
        CUDA_OK(cudaMemcpy(didx, idx, sizeof(int) * n, cudaMemcpyHostToDevice));
        const double density = keys / ((double)H * nqb * Mk);
        for (int ii = 0; ii < nimpl; ii++) {
            wm_fa_args a;
            memset(&a, 0, sizeof a);
            a.q = dq;
            a.ldq = ld;
            a.k = dk;
            a.v = dv;
            a.ldkv = ld;
            a.out = dout;
            a.ldo = ld;
            a.Mq = Mq;
            a.Mk = Mk;
            a.H = H;
            a.D = 128;
            a.scale = 1.f / sqrtf(128.f);
            a.kb_offsets = doff;
            a.kb_indices = didx;
            const double flops = 4.0 * Mq * (double)Mk * H * 128 * density;
            bench(impls[ii].name, impls[ii].impl, &a, reps, flops, density, "sparse");
        }
        cudaFree(doff);
        cudaFree(didx);
        free(off);
        free(idx);
    }

    /* the first implementation again at the target shape: the spread between the two runs is the noise */
    {
        wm_fa_args a;
        memset(&a, 0, sizeof a);
        a.q = dq;
        a.ldq = ld;
        a.k = dk;
        a.v = dv;
        a.ldkv = ld;
        a.out = dout;
        a.ldo = ld;
        a.Mq = Mq;
        a.Mk = 32760;
        a.H = H;
        a.D = 128;
        a.scale = 1.f / sqrtf(128.f);
        if (nimpl > 0) bench(impls[0].name, impls[0].impl, &a, reps, 4.0 * Mq * 32760.0 * H * 128, 1.0, "repeat");
    }

    /* cross-check at the target shape: the implementations must agree */
    if (nimpl > 1) {
        const int Mk = 32760;
        float *o1 = malloc(sizeof(float) * Mq * ld), *o2 = malloc(sizeof(float) * Mq * ld);
        wm_fa_args a;
        memset(&a, 0, sizeof a);
        a.q = dq;
        a.ldq = ld;
        a.k = dk;
        a.v = dv;
        a.ldkv = ld;
        a.out = dout;
        a.ldo = ld;
        a.Mq = Mq;
        a.Mk = Mk;
        a.H = H;
        a.D = 128;
        a.scale = 1.f / sqrtf(128.f);
        a.key_bias = dbias;
        a.bias_head_stride = kmax;
        double maxd = 0;
        wm_flash_attn_force(impls[0].impl);
        CUDA_OK(cudaMemset(dout, 0xFF, sizeof(float) * Mq * ld));
        if (wm_flash_attn(&a, 0)) fprintf(stderr, "%s\n", wm_flash_attn_error());
        CUDA_OK(cudaMemcpy(o1, dout, sizeof(float) * Mq * ld, cudaMemcpyDeviceToHost));
        wm_flash_attn_force(impls[nimpl - 1].impl);
        CUDA_OK(cudaMemset(dout, 0xFF, sizeof(float) * Mq * ld));
        if (wm_flash_attn(&a, 0)) fprintf(stderr, "%s\n", wm_flash_attn_error());
        CUDA_OK(cudaMemcpy(o2, dout, sizeof(float) * Mq * ld, cudaMemcpyDeviceToHost));
        wm_flash_attn_force(WM_FA_IMPL_AUTO);
        size_t nan = 0;
        for (size_t i = 0; i < (size_t)Mq * ld; i++) {
            if (isnan(o1[i]) || isnan(o2[i])) {
                nan++;
                continue;
            }
            double d = fabs((double)o1[i] - o2[i]);
            if (d > maxd) maxd = d;
        }
        fprintf(stderr, "attn-bench: cross-check %s vs %s at q=%d k=%d (bias): max|diff|=%.3g, NaN=%zu\n",
                impls[0].name, impls[nimpl - 1].name, Mq, Mk, maxd, nan);
        free(o1);
        free(o2);
    }
    cudaFree(dq);
    cudaFree(dk);
    cudaFree(dv);
    cudaFree(dout);
    cudaFree(dbias);
    if (g_out) fclose(g_out);
    return 0;
}
