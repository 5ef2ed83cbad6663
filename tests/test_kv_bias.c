/* test_kv_bias.c - TempCache's exact identity on the CPU backend: m identical keys in dense attention
 * equal one representative key with logit bias log(m) and the mean of their values (FAST-AR's lemma),
 * and the bias travels with rows through kv_move. */
#include "backend.h"
#include "harness.h"
#include "rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { H = 2, D = 16, C = H * D, MQ = 5 };

int main(void) {
    wm_backend *be = wm_backend_cpu_new(1);
    /* dense: rows 0..2 distinct keys, rows 3..6 the same key K* with different values */
    const int n_dense = 7, n_merged = 4, m = 4;
    float *k = malloc(sizeof(float) * n_dense * C), *v = malloc(sizeof(float) * n_dense * C);
    float *q = malloc(sizeof(float) * MQ * C);
    wm_normal_fill(k, (size_t)n_dense * C, 1, 1, 0);
    wm_normal_fill(v, (size_t)n_dense * C, 1, 2, 0);
    wm_normal_fill(q, (size_t)MQ * C, 1, 3, 0);
    for (int r = 4; r < n_dense; r++) memcpy(k + r * C, k + 3 * C, sizeof(float) * C);
    wm_kv *dense = be->kv_new(be, n_dense, C), *merged = be->kv_new(be, n_merged + 2, C);
    be->kv_write(be, dense, 0, k, v, n_dense);
    /* merged: rows 0..2 as they are, row 3 = K*, mean of the 4 values, bias log 4 */
    float vm[C];
    for (int i = 0; i < C; i++) vm[i] = (v[3 * C + i] + v[4 * C + i] + v[5 * C + i] + v[6 * C + i]) / m;
    be->kv_write(be, merged, 0, k, v, 3);
    be->kv_write(be, merged, 3, k + 3 * C, vm, 1);
    const float bias[4] = {0, 0, 0, logf((float)m)};
    be->kv_set_bias(be, merged, 0, bias, 4);
    float out_d[MQ * C], out_m[MQ * C];
    const float scale = 1.0f / sqrtf((float)D);
    be->attention(be, out_d, q, dense, n_dense, MQ, H, D, scale);
    be->attention(be, out_m, q, merged, n_merged, MQ, H, D, scale);
    wm_test_compare("merged == dense", out_m, out_d, MQ * C, 1e-5f, 1e-5f);

    /* without the bias the merge is wrong: the test can fail */
    const float zero[4] = {0, 0, 0, 0};
    be->kv_set_bias(be, merged, 0, zero, 4);
    be->attention(be, out_m, q, merged, n_merged, MQ, H, D, scale);
    double worst = 0;
    for (int i = 0; i < MQ * C; i++) worst = fmax(worst, fabs(out_m[i] - out_d[i]));
    printf("without the log(m) bias: max|diff| = %.3g (must be large)\n", worst);
    CHECK(worst > 1e-3);

    /* kv_move carries the bias: move rows 0..3 to 2..5 and read it back */
    be->kv_set_bias(be, merged, 0, bias, 4);
    be->kv_move(be, merged, 2, 0, 4);
    float got[6];
    be->kv_get_bias(be, merged, got, 0, 6);
    CHECK(got[5] == bias[3] && got[2] == 0.0f);
    be->attention(be, out_m, q, merged, 6, MQ, H, D, scale); /* rows 0,1 stale copies: just runs */

    be->kv_free(be, dense);
    be->kv_free(be, merged);
    be->destroy(be);
    free(k), free(v), free(q);
    return wm_test_finish("test_kv_bias");
}
