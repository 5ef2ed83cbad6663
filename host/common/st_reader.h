/* st_reader.h - a tiny safetensors reader for the host (prompt embeddings). The host keeps its own
 * reader because it must not include the plugin's internals. */
#ifndef WM_RUN_ST_READER_H
#define WM_RUN_ST_READER_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8

/* Reads tensor `name` of the safetensors file `path` as fp32 (F32, F16 and BF16 are converted).
 * Returns a malloc'd array of prod(shape) floats and its shape, or NULL with a message in err. */
float *st_read_f32(const char *path, const char *name, int64_t shape[ST_MAX_DIMS], int *ndim, char *err,
                   size_t err_size);

#endif
