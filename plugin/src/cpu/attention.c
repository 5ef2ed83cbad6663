/* attention.c - exact softmax attention on the CPU: per head, S = q k^T * scale through sgemm,
 * a numerically safe row softmax, then S v. Queries go in blocks so the score buffer stays small
 * (Mq_block x Mk) even for long caches. */
#include "common.h"
#include "cpu_ops.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>

#define Q_BLOCK 256

void wm_cpu_attention(wm_backend *be, float *out, const float *q, const wm_kv *kv, int64_t n_rows, int Mq,
                      int H, int D, float scale) {
    const float *k = kv->k, *v = kv->v;
    const int Mk = (int)n_rows;
    const int ld = H * D;
    const int n_qb = (Mq + Q_BLOCK - 1) / Q_BLOCK;
    const int work = H * n_qb;
    /* (head, query block) pairs across threads; each thread owns a score buffer */
    #pragma omp parallel if ((size_t)Mq * Mk * D >= (1u << 20))
    {
        float *S = malloc((size_t)Q_BLOCK * (size_t)Mk * sizeof(float));
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
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, Mk, D, scale, q + (size_t)q0 * ld + h * D, ld,
                        k + h * D, ld, 0.0f, S, Mk);
            for (int i = 0; i < nq; i++) {
                float *row = S + (size_t)i * Mk;
                if (kv->bias)
                    for (int j = 0; j < Mk; j++) row[j] += kv->bias[j];
                float m = -INFINITY;
                for (int j = 0; j < Mk; j++) m = row[j] > m ? row[j] : m;
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
