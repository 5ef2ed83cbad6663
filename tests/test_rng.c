/* test_rng.c - Philox4x32-10 known answers (Random123's kat vectors) and the Box-Muller normals
 * against the PyTorch reference's draws (tests/golden/philox*), bit for bit. */
#include "harness.h"
#include "rng.h"
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static void check_vectors(const cJSON *arr, const char *what) {
    const cJSON *v;
    int n = 0;
    cJSON_ArrayForEach(v, arr) {
        uint32_t ctr[4], key[2], want[4], got[4];
        for (int i = 0; i < 4; i++) ctr[i] = (uint32_t)cJSON_GetArrayItem(cJSON_GetObjectItem(v, "ctr"), i)->valuedouble;
        for (int i = 0; i < 2; i++) key[i] = (uint32_t)cJSON_GetArrayItem(cJSON_GetObjectItem(v, "key"), i)->valuedouble;
        for (int i = 0; i < 4; i++) want[i] = (uint32_t)cJSON_GetArrayItem(cJSON_GetObjectItem(v, "out"), i)->valuedouble;
        wm_philox4x32_10(ctr, key, got);
        int ok = memcmp(got, want, sizeof got) == 0;
        if (!ok) printf("%s #%d: got %08x %08x %08x %08x want %08x %08x %08x %08x\n", what, n, got[0], got[1], got[2],
                        got[3], want[0], want[1], want[2], want[3]);
        CHECK(ok);
        n++;
    }
    printf("%-16s %d vectors checked\n", what, n);
    CHECK(n > 0);
}

int main(void) {
    char *text = wm_test_read_file(WM_SOURCE_DIR "/tests/golden/philox_kat.json", NULL);
    CHECK(text != NULL);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    CHECK(j != NULL);
    if (j) {
        check_vectors(cJSON_GetObjectItem(j, "philox4x32_10"), "random123 kat");
        check_vectors(cJSON_GetObjectItem(j, "noise_blocks"), "noise blocks");
    }
    cJSON_Delete(j);
    free(text);

    /* normals: bit-identical to the reference (float64 Box-Muller rounded once) */
    wm_st_file f;
    CHECK_STATUS(wm_st_open(&f, WM_SOURCE_DIR "/tests/golden/philox.safetensors"), WM_OK);
    const uint64_t seed = 0x0123456789ABCDEFull, streams[3] = {0, 1, 0x100000001ull};
    for (int i = 0; i < 3; i++) {
        char name[64];
        snprintf(name, sizeof name, "noise.s%llu", (unsigned long long)streams[i]);
        const wm_st_tensor *t = wm_st_find(&f, name);
        CHECK(t != NULL);
        if (!t) continue;
        float *ref = malloc((size_t)t->n_elements * sizeof(float)), *got = malloc((size_t)t->n_elements * sizeof(float));
        wm_st_to_f32(t, ref);
        wm_normal_fill(got, (size_t)t->n_elements, seed, streams[i], 0);
        wm_test_compare(name, got, ref, (size_t)t->n_elements, 0.0f, 0.0f);
        /* an offset start gives the same elements (counter-based: no sequential state) */
        wm_normal_fill(got, 10, seed, streams[i], 7);
        wm_test_compare("offset draw", got, ref + 7, 10, 0.0f, 0.0f);
        free(ref);
        free(got);
    }
    wm_st_close(&f);
    /* moments of a long draw: mean ~ 0, var ~ 1 */
    size_t n = 1 << 20;
    float *z = malloc(n * sizeof(float));
    wm_normal_fill(z, n, 42, 3, 0);
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) s += z[i], s2 += (double)z[i] * z[i];
    double mean = s / n, var = s2 / n - mean * mean;
    printf("moments: mean %.5f var %.5f\n", mean, var);
    CHECK(mean > -0.005 && mean < 0.005 && var > 0.99 && var < 1.01);
    free(z);
    return wm_test_finish("test_rng");
}
