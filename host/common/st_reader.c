/* st_reader.c - see st_reader.h. Format: u64 little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
 * then the data; offsets are relative to the end of the header. */
#include "st_reader.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *fail(char *err, size_t err_size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void *fail(char *err, size_t err_size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (err && err_size) vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
    return NULL;
}

static float f16_to_f32(uint16_t h) {
    const int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    float v;
    if (e == 0)
        v = ldexpf((float)m, -24);
    else if (e == 31)
        v = m ? NAN : INFINITY;
    else
        v = ldexpf((float)(m | 1024), e - 25);
    return s ? -v : v;
}

static float bf16_to_f32(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* A JSON number that is a non-negative integer below 2^53. */
static int get_u64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9007199254740992.0 ||
        v->valuedouble != floor(v->valuedouble))
        return 0;
    *out = (uint64_t)v->valuedouble;
    return 1;
}

float *st_read_f32(const char *path, const char *name, int64_t shape[ST_MAX_DIMS], int *ndim, char *err,
                   size_t err_size) {
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, err_size, "%s: cannot open: %s", path, strerror(errno));
    float *out = NULL;
    char *header = NULL;
    uint8_t *raw = NULL;
    cJSON *root = NULL;
    uint8_t len8[8];
    if (fseek(f, 0, SEEK_END) != 0) {
        fail(err, err_size, "%s: cannot seek", path);
        goto done;
    }
    const long file_size = ftell(f);
    rewind(f);
    if (file_size < 8 || fread(len8, 1, 8, f) != 8) {
        fail(err, err_size, "%s: not a safetensors file (too short)", path);
        goto done;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | len8[i];
    if (hlen > (uint64_t)file_size - 8 || hlen > (100u << 20)) {
        fail(err, err_size, "%s: not a safetensors file (header length %llu)", path,
             (unsigned long long)hlen);
        goto done;
    }
    header = malloc(hlen + 1);
    if (!header || fread(header, 1, hlen, f) != hlen) {
        fail(err, err_size, "%s: cannot read the header", path);
        goto done;
    }
    header[hlen] = 0;
    root = cJSON_ParseWithLength(header, hlen);
    if (!cJSON_IsObject(root)) {
        fail(err, err_size, "%s: the header is not a JSON object", path);
        goto done;
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!cJSON_IsObject(t)) {
        fail(err, err_size, "%s: no tensor named '%s'", path, name);
        goto done;
    }
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(t, "dtype");
    const cJSON *shp = cJSON_GetObjectItemCaseSensitive(t, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
    if (!cJSON_IsString(dtype) || !cJSON_IsArray(shp) || !cJSON_IsArray(offs) ||
        cJSON_GetArraySize(offs) != 2) {
        fail(err, err_size, "%s: tensor '%s': malformed entry", path, name);
        goto done;
    }
    size_t esize;
    if (!strcmp(dtype->valuestring, "F32"))
        esize = 4;
    else if (!strcmp(dtype->valuestring, "F16") || !strcmp(dtype->valuestring, "BF16"))
        esize = 2;
    else {
        fail(err, err_size, "%s: tensor '%s' has dtype %s (F32, F16 or BF16 expected)", path, name,
             dtype->valuestring);
        goto done;
    }
    *ndim = cJSON_GetArraySize(shp);
    if (*ndim > ST_MAX_DIMS) {
        fail(err, err_size, "%s: tensor '%s' has %d dimensions", path, name, *ndim);
        goto done;
    }
    uint64_t count = 1;
    for (int i = 0; i < *ndim; i++) {
        uint64_t d;
        if (!get_u64(cJSON_GetArrayItem(shp, i), &d) || d > ((uint64_t)1 << 40)) {
            fail(err, err_size, "%s: tensor '%s': bad shape", path, name);
            goto done;
        }
        shape[i] = (int64_t)d;
        count *= d;
        if (count > ((uint64_t)1 << 40)) {
            fail(err, err_size, "%s: tensor '%s': too large", path, name);
            goto done;
        }
    }
    uint64_t begin, end;
    const uint64_t data_size = (uint64_t)file_size - 8 - hlen;
    if (!get_u64(cJSON_GetArrayItem(offs, 0), &begin) || !get_u64(cJSON_GetArrayItem(offs, 1), &end) ||
        begin > end || end > data_size || end - begin != count * esize) {
        fail(err, err_size, "%s: tensor '%s': data_offsets do not match its shape and dtype or the file size",
             path, name);
        goto done;
    }
    raw = malloc(count * esize + 1);
    out = malloc(count * sizeof(float) + 1);
    if (!raw || !out) {
        free(out);
        out = fail(err, err_size, "%s: out of memory", path);
        goto done;
    }
    if (fseek(f, (long)(8 + hlen + begin), SEEK_SET) != 0 || fread(raw, esize, count, f) != count) {
        free(out);
        out = fail(err, err_size, "%s: cannot read tensor '%s'", path, name);
        goto done;
    }
    for (uint64_t i = 0; i < count; i++) { /* safetensors is little-endian */
        const uint8_t *p = raw + i * esize;
        if (esize == 4) {
            uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            memcpy(&out[i], &u, 4);
        } else {
            uint16_t h = (uint16_t)(p[0] | p[1] << 8);
            out[i] = dtype->valuestring[0] == 'B' ? bf16_to_f32(h) : f16_to_f32(h);
        }
    }
done:
    cJSON_Delete(root);
    free(header);
    free(raw);
    fclose(f);
    return out;
}
