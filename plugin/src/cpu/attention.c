/* attention.c - exact softmax attention on the CPU: per head, S = q k^T * scale through sgemm,
 * the store's bias, an optional mask (AnnSA/AnnCA, accel.c), a numerically safe row softmax, then
 * S v. Queries go in blocks so the score buffer stays small (Mq_block x Mk) even for long caches.
 * One implementation for dense and masked attention, so a mask that keeps every key is bit-identical
 * to dense attention by construction. */
#include "common.h"
#include "cpu_ops.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define Q_BLOCK 256

void wm_cpu_attention_masked(float *out, const float *q, const wm_kv *kv, int Mk, int Mq, int H, int D,
                             float scale, wm_cpu_mask_fn mask, const void *ctx) {
    const float *k = kv->k, *v = kv->v;
    const int ld = H * D;
    const int n_qb = (Mq + Q_BLOCK - 1) / Q_BLOCK;
    const int work = H * n_qb;
    /* (head, query block) pairs across threads; each thread owns a score buffer */
    #pragma omp parallel if ((size_t)Mq * Mk * D >= (1u << 20))
    {
        float *S = malloc((size_t)Q_BLOCK * (size_t)(Mk > 0 ? Mk : 1) * sizeof(float));
        #pragma omp for schedule(dynamic)
        for (int w = 0; w < work; w++) {
            if (!S) { /* reported through the failure flag: the sampler fails the chunk */
                #pragma omp critical
                {
                    wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of memory for attention scores (%d keys)", Mk);
                    wm_note_failure(WM_ERR_OUT_OF_MEMORY);
                }
                continue;
            }
            const int h = w / n_qb, q0 = (w % n_qb) * Q_BLOCK;
            const int nq = Mq - q0 < Q_BLOCK ? Mq - q0 : Q_BLOCK;
            if (Mk <= 0) { /* no keys: zero rows */
                for (int i = 0; i < nq; i++) memset(out + (size_t)(q0 + i) * ld + h * D, 0, (size_t)D * sizeof(float));
                continue;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, Mk, D, scale, q + (size_t)q0 * ld + h * D, ld,
                        k + h * D, ld, 0.0f, S, Mk);
            for (int i = 0; i < nq; i++) {
                float *row = S + (size_t)i * Mk;
                if (kv->bias)
                    for (int j = 0; j < Mk; j++) row[j] += kv->bias[j];
                if (mask) mask(ctx, h, q0 + i, row, Mk);
                float m = -INFINITY;
                for (int j = 0; j < Mk; j++) m = row[j] > m ? row[j] : m;
                if (m == -INFINITY) { /* every key masked (or at -inf bias): zero output, no NaN */
                    memset(row, 0, (size_t)Mk * sizeof(float));
                    continue;
                }
                float sum = 0;
                for (int j = 0; j < Mk; j++) {
                    row[j] = expf(row[j] - m);
                    sum += row[j];
                }
                float inv = 1.0f / sum;
                for (int j = 0; j < Mk; j++) row[j] *= inv;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, D, Mk, 1.0f, S, Mk, v + h * D, ld, 0.0f,
                        out + (size_t)q0 * ld + h * D, ld);
        }
        free(S);
    }
}

void wm_cpu_attention(wm_backend *be, float *out, const float *q, const wm_kv *kv, int64_t n_rows, int Mq,
                      int H, int D, float scale) {
    wm_cpu_attention_masked(out, q, kv, (int)n_rows, Mq, H, D, scale, NULL, NULL);
}
