/* safetensors.h - a validating, mmap-based reader of the safetensors format.
 *
 * Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets},
 * "__metadata__": {..}}, then the data region. Every offset, length, dtype and shape is checked
 * before any tensor is touched, so a malformed file gives an error, never a crash. */
#ifndef WM_SAFETENSORS_H
#define WM_SAFETENSORS_H

#include "wm.h"
#include <stddef.h>
#include <stdint.h>

#define WM_ST_MAX_DIMS 8

typedef enum wm_dtype { WM_DTYPE_F32 = 0, WM_DTYPE_F16 = 1, WM_DTYPE_BF16 = 2, WM_DTYPE_U8 = 3 } wm_dtype;

typedef struct wm_st_tensor {
    char *name;
    wm_dtype dtype;
    int n_dims;
    int64_t shape[WM_ST_MAX_DIMS];
    int64_t n_elements;
    const uint8_t *data; /* points into the mapping */
    size_t n_bytes;
} wm_st_tensor;

typedef struct wm_st_file {
    void *map;       /* whole file (mmap, or malloc for wm_st_open_memory) */
    size_t map_size;
    int owns_malloc; /* 1: map was malloc'ed */
    int n_tensors;
    wm_st_tensor *tensors;
} wm_st_file;

wm_status wm_st_open(wm_st_file *f, const char *path);
/* Parses a buffer in memory (copied). Used by the fuzz target and tests. */
wm_status wm_st_open_memory(wm_st_file *f, const void *data, size_t size);
void wm_st_close(wm_st_file *f);
const wm_st_tensor *wm_st_find(const wm_st_file *f, const char *name);
/* Converts any supported float dtype to fp32 (n = t->n_elements floats). */
void wm_st_to_f32(const wm_st_tensor *t, float *dst);
size_t wm_dtype_size(wm_dtype dt);

#endif
