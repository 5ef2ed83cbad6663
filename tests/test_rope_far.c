/* test_rope_far.c - rollouts past frame 1024 (issue 7): RoPE is relative, and the engine computes
 * its angles in float64 from the absolute frame index (docs/MODEL.md section 3), so attention
 * scores between frames a and b equal those between a + shift and b + shift, for shifts far past the
 * 1024 positions of the PyTorch original's table. Checked on the CPU backend, and on CUDA with
 * `--backend cuda` (ctest: gpu_rope_far). A shift of 0 against itself is exact; the tolerance is
 * that of fp32 rotations of unit-scale vectors. */
#include "backend.h"
#include "harness.h"
#include "rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* scores[h][i][j] = q_i . k_j per head, q of frame a and k of frame b shifted by s */
static void scores(wm_backend *be, const float *q0, const float *k0, int M, int H, int D, int64_t a, int64_t b,
                   int gh, int gw, float *out) {
    const size_t n = (size_t)M * H * D;
    float *q = be->alloc(be, n), *k = be->alloc(be, n), *qh = malloc(n * sizeof(float)), *kh = malloc(n * sizeof(float));
    be->upload(be, q, q0, n);
    be->upload(be, k, k0, n);
    be->rope(be, q, M, H, D, a, gh, gw);
    be->rope(be, k, M, H, D, b, gh, gw);
    be->download(be, qh, q, n);
    be->download(be, kh, k, n);
    for (int h = 0; h < H; h++)
        for (int i = 0; i < M; i++)
            for (int j = 0; j < M; j++) {
                double s = 0;
                for (int e = 0; e < D; e++) s += (double)qh[(size_t)i * H * D + h * D + e] * kh[(size_t)j * H * D + h * D + e];
                out[((size_t)h * M + i) * M + j] = (float)s;
            }
    be->free(be, q), be->free(be, k);
    free(qh), free(kh);
}

int main(int argc, char **argv) {
    int cuda = argc > 2 && !strcmp(argv[1], "--backend") && !strcmp(argv[2], "cuda");
    wm_backend *be = cuda ? wm_backend_cuda_new() : wm_backend_cpu_new(1);
    if (!be) {
        fprintf(stderr, "no CUDA device: skipped\n");
        return 77;
    }
    const int gh = 3, gw = 4, M = gh * gw, H = 2;
    for (int D = 64; D <= 128; D += 64) {
        const size_t n = (size_t)M * H * D;
        float *q = malloc(n * sizeof(float)), *k = malloc(n * sizeof(float));
        wm_normal_fill(q, n, 7, (uint64_t)D, 0);
        wm_normal_fill(k, n, 7, (uint64_t)D + 1, 0);
        float *ref = malloc((size_t)H * M * M * sizeof(float)), *got = malloc((size_t)H * M * M * sizeof(float));
        /* query at frame 5, key at frame 2 (3 frames apart, as within a window) */
        scores(be, q, k, M, H, D, 5, 2, gh, gw, ref);
        const int64_t shifts[] = {1024, 5000, 100000, 10000000};
        for (size_t s = 0; s < sizeof shifts / sizeof shifts[0]; s++) {
            scores(be, q, k, M, H, D, 5 + shifts[s], 2 + shifts[s], gh, gw, got);
            char what[96];
            snprintf(what, sizeof what, "%s D=%d: scores at frames +%lld == at frames 5, 2", cuda ? "cuda" : "cpu", D,
                     (long long)shifts[s]);
            CHECK(wm_test_compare(what, got, ref, (size_t)H * M * M, 2e-4f, 2e-5f));
        }
        /* the test can fail: a different frame distance changes the scores */
        scores(be, q, k, M, H, D, 6, 2, gh, gw, got);
        float worst = 0;
        for (int i = 0; i < H * M * M; i++) worst = fabsf(got[i] - ref[i]) > worst ? fabsf(got[i] - ref[i]) : worst;
        CHECK(worst > 1e-2f);
        free(q), free(k), free(ref), free(got);
    }
    be->destroy(be);
    return wm_test_finish(cuda ? "gpu_rope_far" : "test_rope_far");
}
