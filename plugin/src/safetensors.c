/* safetensors.c - the validating safetensors reader (see safetensors.h).
 *
 * The whole file is mapped (or copied, for wm_st_open_memory); the JSON header is parsed with cJSON
 * and every entry is checked - dtype, shape, offsets, size, overlap, duplicate names - before any
 * tensor is exposed. Tensor data pointers point into the mapping and may be unaligned (the header
 * length is arbitrary), so readers go through memcpy (wm_st_to_f32 does). */
#include "safetensors.h"

#include "common.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define WM_ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000) /* the reference implementation's limit */
/* Integers above 2^53 are not exact in cJSON's double; no valid offset or dim gets near it. */
#define WM_ST_MAX_INT 9007199254740992.0

size_t wm_dtype_size(wm_dtype dt) {
    switch (dt) {
    case WM_DTYPE_F32: return 4;
    case WM_DTYPE_F16: return 2;
    case WM_DTYPE_BF16: return 2;
    case WM_DTYPE_U8: return 1;
    }
    return 0;
}

static int dtype_from_string(const char *s, wm_dtype *out) {
    if (!strcmp(s, "F32")) { *out = WM_DTYPE_F32; return 1; }
    if (!strcmp(s, "F16")) { *out = WM_DTYPE_F16; return 1; }
    if (!strcmp(s, "BF16")) { *out = WM_DTYPE_BF16; return 1; }
    if (!strcmp(s, "U8")) { *out = WM_DTYPE_U8; return 1; }
    return 0;
}

/* A JSON number that is an exact integer in [0, 2^53]. */
static int json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!isfinite(d) || d < 0 || d > WM_ST_MAX_INT || floor(d) != d) return 0;
    *out = (uint64_t)d;
    return 1;
}

/* Prints at most 64 bytes of a name so a hostile header cannot flood the error message. */
#define NAME_FMT "'%.64s%s'"
#define NAME_ARG(s) (s), (strlen(s) > 64 ? "..." : "")

void wm_st_close(wm_st_file *f) {
    if (!f) return;
    if (f->tensors) {
        for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
        free(f->tensors);
    }
    if (f->map) {
        if (f->owns_malloc) free(f->map);
        else munmap(f->map, f->map_size);
    }
    memset(f, 0, sizeof *f);
}

static int cmp_by_name(const void *a, const void *b) {
    const wm_st_tensor *x = *(const wm_st_tensor *const *)a, *y = *(const wm_st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int cmp_by_offset(const void *a, const void *b) {
    const wm_st_tensor *x = *(const wm_st_tensor *const *)a, *y = *(const wm_st_tensor *const *)b;
    if (x->data != y->data) return x->data < y->data ? -1 : 1;
    return x->n_bytes < y->n_bytes ? -1 : x->n_bytes > y->n_bytes;
}

static wm_status parse_metadata(const cJSON *meta, const char *label) {
    if (!cJSON_IsObject(meta)) return wm_set_error(WM_ERR_FORMAT, "%s: '__metadata__' is not an object", label);
    for (const cJSON *m = meta->child; m; m = m->next) {
        if (!cJSON_IsString(m))
            return wm_set_error(WM_ERR_FORMAT, "%s: '__metadata__' entry " NAME_FMT " is not a string", label,
                                NAME_ARG(m->string ? m->string : ""));
    }
    return WM_OK;
}

/* Fills t from one header entry; data_size is the size of the data region at `data`. */
static wm_status parse_entry(wm_st_tensor *t, const cJSON *e, const uint8_t *data, uint64_t data_size,
                             const char *label) {
    const char *name = t->name;
    if (!cJSON_IsObject(e))
        return wm_set_error(WM_ERR_FORMAT, "%s: tensor " NAME_FMT ": entry is not an object", label, NAME_ARG(name));
    const cJSON *jdtype = NULL, *jshape = NULL, *joff = NULL;
    for (const cJSON *c = e->child; c; c = c->next) {
        const cJSON **slot = !strcmp(c->string, "dtype")          ? &jdtype
                             : !strcmp(c->string, "shape")        ? &jshape
                             : !strcmp(c->string, "data_offsets") ? &joff
                                                                  : NULL;
        if (!slot)
            return wm_set_error(WM_ERR_FORMAT, "%s: tensor " NAME_FMT ": unknown field " NAME_FMT, label, NAME_ARG(name),
                                NAME_ARG(c->string));
        if (*slot)
            return wm_set_error(WM_ERR_FORMAT, "%s: tensor " NAME_FMT ": duplicate field '%s'", label, NAME_ARG(name),
                                c->string);
        *slot = c;
    }
    if (!jdtype || !jshape || !joff)
        return wm_set_error(WM_ERR_FORMAT, "%s: tensor " NAME_FMT ": missing '%s'", label, NAME_ARG(name),
                            !jdtype ? "dtype" : !jshape ? "shape" : "data_offsets");

    if (!cJSON_IsString(jdtype))
        return wm_set_error(WM_ERR_FORMAT, "%s: tensor " NAME_FMT ": dtype is not a string", label, NAME_ARG(name));
    if (!dtype_from_string(jdtype->valuestring, &t->dtype))
        return wm_set_error(WM_ERR_FORMAT,
                            "%s: tensor " NAME_FMT ": unsupported dtype " NAME_FMT " (supported: F32, F16, BF16, U8)",
                            label, NAME_ARG(name), NAME_ARG(jdtype->valuestring));

    if (!cJSON_IsArray(jshape))
        return wm_set_error(WM_ERR_FORMAT, "%s: tensor " NAME_FMT ": shape is not an array", label, NAME_ARG(name));
    int nd = cJSON_GetArraySize(jshape);
    if (nd > WM_ST_MAX_DIMS)
        return wm_set_error(WM_ERR_FORMAT, "%s: tensor " NAME_FMT ": %d dims (at most %d)", label, NAME_ARG(name), nd,
                            WM_ST_MAX_DIMS);
    t->n_dims = nd;
    int64_t n = 1;
    int overflow = 0, i = 0;
    for (const cJSON *d = jshape->child; d; d = d->next, i++) {
        uint64_t v;
        if (!json_uint(d, &v))
            return wm_set_error(WM_ERR_FORMAT, "%s: tensor " NAME_FMT ": shape[%d] is not a non-negative integer", label,
                                NAME_ARG(name), i);
        t->shape[i] = (int64_t)v;
        if (!overflow && __builtin_mul_overflow(n, (int64_t)v, &n)) overflow = 1;
    }
    /* A zero dim makes the product 0 whatever overflowed before it. */
    for (i = 0; i < nd; i++)
        if (t->shape[i] == 0) { n = 0; overflow = 0; }
    int64_t n_bytes = 0;
    if (overflow || __builtin_mul_overflow(n, (int64_t)wm_dtype_size(t->dtype), &n_bytes))
        return wm_set_error(WM_ERR_FORMAT, "%s: tensor " NAME_FMT ": element count of the shape overflows", label,
                            NAME_ARG(name));
    t->n_elements = n;

    uint64_t begin, end;
    if (!cJSON_IsArray(joff) || cJSON_GetArraySize(joff) != 2 || !json_uint(joff->child, &begin) ||
        !json_uint(joff->child->next, &end))
        return wm_set_error(WM_ERR_FORMAT, "%s: tensor " NAME_FMT ": data_offsets is not [begin, end] of non-negative integers",
                            label, NAME_ARG(name));
    if (begin > end)
        return wm_set_error(WM_ERR_FORMAT, "%s: tensor " NAME_FMT ": data_offsets begin %llu > end %llu", label,
                            NAME_ARG(name), (unsigned long long)begin, (unsigned long long)end);
    if (end > data_size)
        return wm_set_error(WM_ERR_FORMAT,
                            "%s: tensor " NAME_FMT ": data_offsets end %llu is past the data region (%llu bytes; file truncated?)",
                            label, NAME_ARG(name), (unsigned long long)end, (unsigned long long)data_size);
    if (end - begin != (uint64_t)n_bytes)
        return wm_set_error(WM_ERR_FORMAT,
                            "%s: tensor " NAME_FMT ": data_offsets span %llu bytes but shape and dtype need %lld", label,
                            NAME_ARG(name), (unsigned long long)(end - begin), (long long)n_bytes);
    t->data = data + begin;
    t->n_bytes = (size_t)n_bytes;
    return WM_OK;
}

/* Parses and validates f->map (f->map_size bytes). On failure the caller closes f. */
static wm_status st_parse(wm_st_file *f, const char *label) {
    const uint8_t *bytes = f->map;
    size_t size = f->map_size;
    if (size < 8)
        return wm_set_error(WM_ERR_FORMAT, "%s: %zu bytes, too short for a safetensors file (needs an 8-byte header length)",
                            label, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | bytes[i];
    if (hlen > size - 8)
        return wm_set_error(WM_ERR_FORMAT, "%s: header length %llu exceeds the %zu bytes after it (file truncated?)", label,
                            (unsigned long long)hlen, size - 8);
    if (hlen > WM_ST_MAX_HEADER)
        return wm_set_error(WM_ERR_FORMAT, "%s: header length %llu is absurd (limit %llu)", label,
                            (unsigned long long)hlen, (unsigned long long)WM_ST_MAX_HEADER);
    if (hlen < 2) return wm_set_error(WM_ERR_FORMAT, "%s: header of %llu bytes is not a JSON object", label,
                                      (unsigned long long)hlen);

    /* The header is not NUL-terminated in the file: parse a terminated copy. */
    char *text = wm_malloc((size_t)hlen + 1, "safetensors header");
    if (!text) return WM_ERR_OUT_OF_MEMORY;
    memcpy(text, bytes + 8, (size_t)hlen);
    text[hlen] = 0;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, (size_t)hlen, &end, 0);
    if (!root) {
        size_t pos = end && end >= text && end <= text + hlen ? (size_t)(end - text) : 0;
        free(text);
        return wm_set_error(WM_ERR_FORMAT, "%s: header is not valid JSON (error at byte %zu of %llu)", label, pos,
                            (unsigned long long)hlen);
    }
    /* Only padding (spaces, as writers align the data region) may follow the JSON value. */
    size_t consumed = (size_t)(end - text);
    for (size_t i = consumed; i < hlen; i++) {
        char c = text[i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            cJSON_Delete(root);
            free(text);
            return wm_set_error(WM_ERR_FORMAT, "%s: header has trailing bytes after the JSON object (at byte %zu)", label, i);
        }
    }
    free(text);

    wm_status st = WM_OK;
    wm_st_tensor **order = NULL;
    if (!cJSON_IsObject(root)) {
        st = wm_set_error(WM_ERR_FORMAT, "%s: header is not a JSON object", label);
        goto done;
    }
    const uint8_t *data = bytes + 8 + hlen;
    uint64_t data_size = size - 8 - hlen;

    int n = 0, n_meta = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) {
            if (++n_meta > 1) {
                st = wm_set_error(WM_ERR_FORMAT, "%s: duplicate '__metadata__'", label);
                goto done;
            }
            if ((st = parse_metadata(e, label)) != WM_OK) goto done;
        } else {
            n++;
        }
    }
    f->tensors = wm_calloc((size_t)n, sizeof *f->tensors, "safetensors tensor table");
    if (!f->tensors) { st = WM_ERR_OUT_OF_MEMORY; goto done; }
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) continue;
        wm_st_tensor *t = &f->tensors[f->n_tensors];
        size_t len = strlen(e->string);
        if (len == 0) {
            st = wm_set_error(WM_ERR_FORMAT, "%s: tensor with an empty name", label);
            goto done;
        }
        t->name = wm_malloc(len + 1, "tensor name");
        if (!t->name) { st = WM_ERR_OUT_OF_MEMORY; goto done; }
        memcpy(t->name, e->string, len + 1);
        f->n_tensors++;
        if ((st = parse_entry(t, e, data, data_size, label)) != WM_OK) goto done;
    }

    if (n > 1) {
        order = wm_malloc((size_t)n * sizeof *order, "safetensors index");
        if (!order) { st = WM_ERR_OUT_OF_MEMORY; goto done; }
        for (int i = 0; i < n; i++) order[i] = &f->tensors[i];
        qsort(order, (size_t)n, sizeof *order, cmp_by_name);
        for (int i = 1; i < n; i++) {
            if (!strcmp(order[i - 1]->name, order[i]->name)) {
                st = wm_set_error(WM_ERR_FORMAT, "%s: duplicate tensor " NAME_FMT, label, NAME_ARG(order[i]->name));
                goto done;
            }
        }
        /* Empty tensors occupy no bytes and cannot overlap anything. */
        qsort(order, (size_t)n, sizeof *order, cmp_by_offset);
        const wm_st_tensor *prev = NULL;
        for (int i = 0; i < n; i++) {
            const wm_st_tensor *t = order[i];
            if (t->n_bytes == 0) continue;
            if (prev && t->data < prev->data + prev->n_bytes) {
                st = wm_set_error(WM_ERR_FORMAT, "%s: tensors " NAME_FMT " [%zu, %zu) and " NAME_FMT " [%zu, %zu) overlap",
                                  label, NAME_ARG(prev->name), (size_t)(prev->data - data),
                                  (size_t)(prev->data - data) + prev->n_bytes, NAME_ARG(t->name),
                                  (size_t)(t->data - data), (size_t)(t->data - data) + t->n_bytes);
                goto done;
            }
            prev = t;
        }
    }

done:
    free(order);
    cJSON_Delete(root);
    return st;
}

wm_status wm_st_open(wm_st_file *f, const char *path) {
    if (!f || !path) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "wm_st_open: NULL argument");
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return wm_set_error(WM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return wm_set_error(WM_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return wm_set_error(WM_ERR_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    if (size < 8) {
        close(fd);
        return wm_set_error(WM_ERR_FORMAT, "%s: %zu bytes, too short for a safetensors file (needs an 8-byte header length)",
                            path, size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) return wm_set_error(WM_ERR_IO, "%s: cannot map %zu bytes: %s", path, size, strerror(e));
    f->map = map;
    f->map_size = size;
    f->owns_malloc = 0;
    wm_status st = st_parse(f, path);
    if (st != WM_OK) wm_st_close(f);
    return st;
}

wm_status wm_st_open_memory(wm_st_file *f, const void *data, size_t size) {
    if (!f || (!data && size)) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "wm_st_open_memory: NULL argument");
    memset(f, 0, sizeof *f);
    f->map = wm_malloc(size, "safetensors buffer");
    if (!f->map) return WM_ERR_OUT_OF_MEMORY;
    if (size) memcpy(f->map, data, size);
    f->map_size = size;
    f->owns_malloc = 1;
    wm_status st = st_parse(f, "<memory>");
    if (st != WM_OK) wm_st_close(f);
    return st;
}

const wm_st_tensor *wm_st_find(const wm_st_file *f, const char *name) {
    if (!f || !name) return NULL;
    for (int i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

static float f32_from_bits(uint32_t b) {
    float x;
    memcpy(&x, &b, sizeof x);
    return x;
}

/* IEEE half -> float, exact for every input (subnormals, infinities, NaN payloads). */
static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        if (man == 0) return f32_from_bits(sign);
        /* subnormal: man * 2^-24, exact in float */
        float v = (float)man * 5.9604644775390625e-08f;
        return sign ? -v : v;
    }
    return f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

void wm_st_to_f32(const wm_st_tensor *t, float *dst) {
    const uint8_t *src = t->data;
    int64_t n = t->n_elements;
    if (n <= 0) return;
    switch (t->dtype) {
    case WM_DTYPE_F32:
        memcpy(dst, src, (size_t)n * 4); /* the file is little-endian, as is every target */
        break;
    case WM_DTYPE_F16:
        for (int64_t i = 0; i < n; i++) dst[i] = f16_to_f32((uint16_t)(src[2 * i] | (src[2 * i + 1] << 8)));
        break;
    case WM_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = f32_from_bits((uint32_t)(src[2 * i] | (src[2 * i + 1] << 8)) << 16);
        break;
    case WM_DTYPE_U8:
        for (int64_t i = 0; i < n; i++) dst[i] = (float)src[i];
        break;
    }
}
