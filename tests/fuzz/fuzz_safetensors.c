/* fuzz_safetensors.c - libFuzzer target for the safetensors reader: any byte string must either be
 * rejected with an error message or yield tensors whose every element can be read (wm_st_to_f32
 * touches each byte, so ASan catches any offset the validation let through). */
#include "safetensors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

const char *wm_get_error(void);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    wm_st_file f;
    wm_status st = wm_st_open_memory(&f, data, size);
    if (st != WM_OK) {
        if (!wm_get_error()[0]) abort(); /* every failure must say why */
        wm_st_close(&f);
        return 0;
    }
    for (int i = 0; i < f.n_tensors; i++) {
        const wm_st_tensor *t = &f.tensors[i];
        if (wm_st_find(&f, t->name) != t) abort(); /* names are unique */
        if (t->n_bytes != (size_t)t->n_elements * wm_dtype_size(t->dtype)) abort();
        if (t->data < (const uint8_t *)f.map || t->data + t->n_bytes > (const uint8_t *)f.map + f.map_size) abort();
        float *dst = malloc((size_t)(t->n_elements ? t->n_elements : 1) * sizeof *dst);
        if (!dst) continue;
        wm_st_to_f32(t, dst);
        free(dst);
    }
    wm_st_close(&f);
    return 0;
}
