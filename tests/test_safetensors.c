/* test_safetensors.c - the safetensors reader: exact values of valid F32/F16/BF16/U8 files (through
 * mmap and through memory), and one malformed file per validation rule, each rejected with its
 * specific status and a message naming the file and the tensor. */
#include "harness.h"
#include "safetensors.h"

#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[64];
static int g_case;

/* u64 little-endian header length, the header, then the data region. */
static unsigned char *make_st(const char *header, const void *data, size_t dlen, size_t *size) {
    size_t hlen = strlen(header);
    *size = 8 + hlen + dlen;
    unsigned char *buf = malloc(*size ? *size : 1);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(buf + 8, header, hlen);
    if (dlen) memcpy(buf + 8 + hlen, data, dlen);
    return buf;
}

static void path_for(char *path, size_t n, const char *stem) { snprintf(path, n, "%s/%s.safetensors", g_dir, stem); }

static void put_f16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }

/* Checks got == want bit for bit, except that any NaN matches any NaN. */
static void check_exact(const char *what, const float *got, const float *want, int n) {
    int bad = 0;
    for (int i = 0; i < n; i++) {
        int ok = isnan(want[i]) ? isnan(got[i]) : (memcmp(&got[i], &want[i], 4) == 0);
        if (!ok) {
            fprintf(stderr, "%s[%d]: got %.9g, want %.9g\n", what, i, got[i], want[i]);
            bad++;
        }
    }
    printf("%-28s n=%-3d exact: %s\n", what, n, bad ? "MISMATCH" : "ok");
    if (bad) wm_test_failures++;
}

static void check_tensor(const wm_st_file *f, const char *name, wm_dtype dt, int nd, const int64_t *shape,
                         const float *want) {
    const wm_st_tensor *t = wm_st_find(f, name);
    CHECK(t != NULL);
    if (!t) return;
    CHECK(t->dtype == dt);
    CHECK(t->n_dims == nd);
    int64_t n = 1;
    for (int i = 0; i < nd; i++) {
        CHECK(t->shape[i] == shape[i]);
        n *= shape[i];
    }
    CHECK(t->n_elements == n);
    CHECK(t->n_bytes == (size_t)n * wm_dtype_size(dt));
    float *got = malloc((size_t)(n ? n : 1) * sizeof *got);
    wm_st_to_f32(t, got);
    if (n) check_exact(name, got, want, (int)n);
    free(got);
}

static void test_valid(void) {
    /* F32 [2,3] */
    const float f32[6] = {1.5f, -2.25f, 3e-38f, 1e30f, -0.0f, 0.1f};
    /* F16 [12]: zero, -zero, 1, -2, max, smallest subnormal, largest subnormal, smallest normal,
     * inf, -inf, NaN, 1/3 rounded */
    const uint16_t h[12] = {0x0000, 0x8000, 0x3C00, 0xC000, 0x7BFF, 0x0001,
                            0x03FF, 0x0400, 0x7C00, 0xFC00, 0x7E00, 0x3555};
    const float h_want[12] = {0.0f, -0.0f, 1.0f, -2.0f, 65504.0f, ldexpf(1, -24), ldexpf(1023, -24), ldexpf(1, -14),
                              INFINITY, -INFINITY, NAN, 0.333251953125f};
    /* BF16 [2,4]: 1, -3, inf, -inf, NaN, a float subnormal, 3.140625, -0 */
    const uint16_t b[8] = {0x3F80, 0xC040, 0x7F80, 0xFF80, 0x7FC0, 0x0001, 0x4049, 0x8000};
    const float b_want[8] = {1.0f, -3.0f, INFINITY, -INFINITY, NAN, ldexpf(1, -133), 3.140625f, -0.0f};
    const unsigned char u8[3] = {0, 7, 255};
    const float u8_want[3] = {0, 7, 255};
    const float scalar = 42.0f;

    /* Data layout: f32 [0,24) f16 [24,48) bf16 [48,64) u8 [64,67) scalar [67,71) empty [71,71). The
     * scalar sits at an odd offset on purpose: pointers into the file are not aligned. */
    unsigned char data[71];
    memcpy(data, f32, 24);
    for (int i = 0; i < 12; i++) put_f16(data + 24 + 2 * i, h[i]);
    for (int i = 0; i < 8; i++) put_f16(data + 48 + 2 * i, b[i]);
    memcpy(data + 64, u8, 3);
    memcpy(data + 67, &scalar, 4);
    const char *header =
        "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"test\"},"
        "\"a.f32\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
        "\"b.f16\":{\"dtype\":\"F16\",\"shape\":[12],\"data_offsets\":[24,48]},"
        "\"c.bf16\":{\"dtype\":\"BF16\",\"shape\":[2,4],\"data_offsets\":[48,64]},"
        "\"d.u8\":{\"dtype\":\"U8\",\"shape\":[3,1],\"data_offsets\":[64,67]},"
        "\"e.scalar\":{\"data_offsets\":[67,71],\"shape\":[],\"dtype\":\"F32\"},"
        "\"f.empty\":{\"dtype\":\"F16\",\"shape\":[4,0],\"data_offsets\":[71,71]}}   ";
    size_t size;
    unsigned char *buf = make_st(header, data, sizeof data, &size);

    for (int pass = 0; pass < 2; pass++) {
        wm_st_file f;
        char path[128];
        if (pass == 0) {
            path_for(path, sizeof path, "valid");
            CHECK(wm_test_write_file(path, buf, size));
            CHECK_STATUS(wm_st_open(&f, path), WM_OK);
        } else {
            CHECK_STATUS(wm_st_open_memory(&f, buf, size), WM_OK);
        }
        printf("valid file via %s: %d tensors\n", pass ? "memory" : "mmap", f.n_tensors);
        CHECK(f.n_tensors == 6);
        CHECK(f.owns_malloc == pass);
        const int64_t s23[] = {2, 3}, s12[] = {12}, s24[] = {2, 4}, s31[] = {3, 1}, s40[] = {4, 0};
        check_tensor(&f, "a.f32", WM_DTYPE_F32, 2, s23, f32);
        check_tensor(&f, "b.f16", WM_DTYPE_F16, 1, s12, h_want);
        check_tensor(&f, "c.bf16", WM_DTYPE_BF16, 2, s24, b_want);
        check_tensor(&f, "d.u8", WM_DTYPE_U8, 2, s31, u8_want);
        check_tensor(&f, "e.scalar", WM_DTYPE_F32, 0, NULL, &scalar);
        check_tensor(&f, "f.empty", WM_DTYPE_F16, 2, s40, NULL);
        CHECK(wm_st_find(&f, "__metadata__") == NULL);
        CHECK(wm_st_find(&f, "missing") == NULL);
        wm_st_close(&f);
        CHECK(f.map == NULL && f.tensors == NULL && f.n_tensors == 0);
        wm_st_close(&f); /* closing twice is harmless */
        if (pass == 0) unlink(path);
    }
    free(buf);

    /* Every F16 bit pattern against the definition: (-1)^s * 2^(e-15) * (1 + m/1024), subnormals
     * 2^-14 * m/1024, e = 31 inf/NaN. */
    unsigned char all[65536 * 2];
    for (int i = 0; i < 65536; i++) put_f16(all + 2 * i, (uint16_t)i);
    buf = make_st("{\"all\":{\"dtype\":\"F16\",\"shape\":[65536],\"data_offsets\":[0,131072]}}", all, sizeof all, &size);
    wm_st_file f;
    CHECK_STATUS(wm_st_open_memory(&f, buf, size), WM_OK);
    const wm_st_tensor *t = wm_st_find(&f, "all");
    if (t) {
        float *got = malloc(65536 * sizeof *got), *want = malloc(65536 * sizeof *want);
        wm_st_to_f32(t, got);
        for (int i = 0; i < 65536; i++) {
            int s = i >> 15, e = (i >> 10) & 31, m = i & 1023;
            double v = e == 31 ? (m ? NAN : INFINITY) : e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
            want[i] = (float)(s ? -v : v);
        }
        check_exact("f16 all 65536 patterns", got, want, 65536);
        free(got);
        free(want);
    }
    wm_st_close(&f);
    free(buf);
}

/* Writes `bytes`, opens it by path and from memory; both must give `want` with a message holding
 * every string of `needles` (NULL-terminated; the file path is always required for the path open). */
static void expect_fail(const char *what, const unsigned char *bytes, size_t size, wm_status want, const char *n1,
                        const char *n2) {
    char stem[32], path[128];
    snprintf(stem, sizeof stem, "case%02d", g_case++);
    path_for(path, sizeof path, stem);
    CHECK(wm_test_write_file(path, bytes, size));
    wm_st_file f;
    wm_status st = wm_st_open(&f, path);
    const char *msg = wm_get_error();
    printf("  %-28s -> status %d: %s\n", what, (int)st, msg);
    if (st != want) {
        fprintf(stderr, "%s: status %d, expected %d\n", what, (int)st, (int)want);
        wm_test_failures++;
    }
    const char *needles[3] = {path, n1, n2};
    for (int i = 0; i < 3; i++) {
        if (needles[i] && !strstr(msg, needles[i])) {
            fprintf(stderr, "%s: message lacks '%s'\n", what, needles[i]);
            wm_test_failures++;
        }
    }
    CHECK(f.map == NULL && f.tensors == NULL);
    wm_st_close(&f);
    unlink(path);

    st = wm_st_open_memory(&f, bytes, size);
    if (st != want) {
        fprintf(stderr, "%s (memory): status %d, expected %d (%s)\n", what, (int)st, (int)want, wm_get_error());
        wm_test_failures++;
    }
    for (int i = 1; i < 3; i++) {
        if (needles[i] && !strstr(wm_get_error(), needles[i])) {
            fprintf(stderr, "%s (memory): message lacks '%s'\n", what, needles[i]);
            wm_test_failures++;
        }
    }
    wm_st_close(&f);
}

static void expect_fail_header(const char *what, const char *header, size_t dlen, wm_status want, const char *n1,
                               const char *n2) {
    unsigned char *zeros = calloc(dlen ? dlen : 1, 1);
    size_t size;
    unsigned char *buf = make_st(header, zeros, dlen, &size);
    expect_fail(what, buf, size, want, n1, n2);
    free(buf);
    free(zeros);
}

static void test_malformed(void) {
    printf("malformed files:\n");
    const char *good = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
    size_t size;
    unsigned char *buf = make_st(good, "0123456789abcdef", 16, &size);

    expect_fail("empty file", buf, 0, WM_ERR_FORMAT, "too short", NULL);
    expect_fail("5-byte file", buf, 5, WM_ERR_FORMAT, "too short", NULL);
    expect_fail("truncated in header", buf, 8 + strlen(good) / 2, WM_ERR_FORMAT, "header length", NULL);
    expect_fail("truncated in data", buf, size - 3, WM_ERR_FORMAT, "'w'", "past the data region");
    free(buf);

    /* header length fields */
    unsigned char raw[16] = {0};
    memcpy(raw + 8, "{}      ", 8);
    raw[7] = 0x80; /* 2^63 */
    expect_fail("header length 2^63", raw, sizeof raw, WM_ERR_FORMAT, "header length", NULL);
    memset(raw, 0xff, 8);
    expect_fail("header length 2^64-1", raw, sizeof raw, WM_ERR_FORMAT, "header length", NULL);
    memset(raw, 0, 8);
    raw[0] = 9; /* one more than the 8 bytes that follow */
    expect_fail("header length > file", raw, sizeof raw, WM_ERR_FORMAT, "exceeds", NULL);
    raw[0] = 0;
    expect_fail("header length 0", raw, sizeof raw, WM_ERR_FORMAT, "not a JSON object", NULL);

    /* A 100 MB + 1 header inside a sparse file big enough to hold it: rejected for its size. */
    {
        char path[128];
        path_for(path, sizeof path, "absurd");
        uint64_t hlen = 100u * 1000 * 1000 + 1;
        int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
        unsigned char len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(hlen >> (8 * i));
        CHECK(fd >= 0 && write(fd, len8, 8) == 8 && ftruncate(fd, (off_t)(8 + hlen + 16)) == 0);
        if (fd >= 0) close(fd);
        wm_st_file f;
        wm_status st = wm_st_open(&f, path);
        printf("  %-28s -> status %d: %s\n", "header length 100 MB + 1", (int)st, wm_get_error());
        CHECK(st == WM_ERR_FORMAT && strstr(wm_get_error(), "absurd") && strstr(wm_get_error(), path));
        wm_st_close(&f);
        unlink(path);
    }

    /* JSON */
    expect_fail_header("bad JSON", "{\"w\": {\"dtype\": \"F32\",", 0, WM_ERR_FORMAT, "not valid JSON", NULL);
    expect_fail_header("binary header", "\x01\x02\x03\x04", 0, WM_ERR_FORMAT, "not valid JSON", NULL);
    expect_fail_header("header is an array", "[1, 2, 3]", 0, WM_ERR_FORMAT, "not a JSON object", NULL);
    expect_fail_header("trailing bytes after JSON", "{}  x", 0, WM_ERR_FORMAT, "trailing", NULL);
    expect_fail_header("entry not an object", "{\"w\": 5}", 0, WM_ERR_FORMAT, "'w'", NULL);

    /* offsets */
    expect_fail_header("end past data region", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 12,
                       WM_ERR_FORMAT, "'w'", "past the data region");
    expect_fail_header("offset 1e300", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1e300]}}", 16,
                       WM_ERR_FORMAT, "'w'", "data_offsets");
    expect_fail_header("negative offset", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}", 16,
                       WM_ERR_FORMAT, "'w'", "data_offsets");
    expect_fail_header("begin > end", "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 16,
                       WM_ERR_FORMAT, "'w'", "begin 8 > end 4");
    expect_fail_header("data_offsets of 3", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 16,
                       WM_ERR_FORMAT, "'w'", "data_offsets");
    expect_fail_header("size mismatch with shape", "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}",
                       16, WM_ERR_FORMAT, "'w'", "need 12");
    expect_fail_header("size mismatch (bf16)", "{\"w\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,16]}}",
                       16, WM_ERR_FORMAT, "'w'", "need 8");
    expect_fail_header("overlapping tensors",
                       "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                       16, WM_ERR_FORMAT, "'a'", "'b'");
    expect_fail_header("identical ranges",
                       "{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
                       "\"c\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                       "\"a\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[8,16]}}",
                       16, WM_ERR_FORMAT, "overlap", "'b'");

    /* dtype and shape */
    expect_fail_header("unknown dtype", "{\"w\":{\"dtype\":\"Q4_K\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4,
                       WM_ERR_FORMAT, "'w'", "'Q4_K'");
    expect_fail_header("unsupported dtype F64", "{\"w\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8,
                       WM_ERR_FORMAT, "'w'", "'F64'");
    expect_fail_header("dtype not a string", "{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                       WM_ERR_FORMAT, "'w'", "dtype");
    expect_fail_header("negative shape", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1,2],\"data_offsets\":[0,8]}}", 8,
                       WM_ERR_FORMAT, "'w'", "shape[0]");
    expect_fail_header("non-integer shape", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,1.5],\"data_offsets\":[0,12]}}", 12,
                       WM_ERR_FORMAT, "'w'", "shape[1]");
    expect_fail_header("string in shape", "{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8,
                       WM_ERR_FORMAT, "'w'", "shape[0]");
    expect_fail_header("shape not an array", "{\"w\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8,
                       WM_ERR_FORMAT, "'w'", "shape");
    expect_fail_header("9 dims", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
                       WM_ERR_FORMAT, "'w'", "9 dims");
    expect_fail_header("shape product overflow",
                       "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,0]}}", 0,
                       WM_ERR_FORMAT, "'w'", "overflow");
    expect_fail_header("byte size overflow",
                       "{\"w\":{\"dtype\":\"F32\",\"shape\":[4503599627370496,512],\"data_offsets\":[0,0]}}", 0,
                       WM_ERR_FORMAT, "'w'", "overflow");

    /* entries and names */
    expect_fail_header("duplicate name",
                       "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                       "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                       8, WM_ERR_FORMAT, "duplicate", "'w'");
    expect_fail_header("missing dtype", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, WM_ERR_FORMAT, "'w'",
                       "dtype");
    expect_fail_header("missing data_offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, WM_ERR_FORMAT, "'w'",
                       "data_offsets");
    expect_fail_header("unknown field", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4,
                       WM_ERR_FORMAT, "'w'", "'x'");
    expect_fail_header("empty tensor name", "{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                       WM_ERR_FORMAT, "empty name", NULL);
    expect_fail_header("metadata not an object", "{\"__metadata__\":[\"a\"]}", 0, WM_ERR_FORMAT, "__metadata__", NULL);
    expect_fail_header("metadata value not string", "{\"__metadata__\":{\"k\":1}}", 0, WM_ERR_FORMAT, "__metadata__",
                       "'k'");

    /* I/O */
    wm_st_file f;
    char path[128];
    path_for(path, sizeof path, "does_not_exist");
    wm_status st = wm_st_open(&f, path);
    printf("  %-28s -> status %d: %s\n", "missing file", (int)st, wm_get_error());
    CHECK(st == WM_ERR_IO && strstr(wm_get_error(), path));
    st = wm_st_open(&f, g_dir);
    printf("  %-28s -> status %d: %s\n", "a directory", (int)st, wm_get_error());
    CHECK(st == WM_ERR_IO && strstr(wm_get_error(), g_dir));
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/wm_test_st_XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_valid();
    test_malformed();
    rmdir(g_dir);
    return wm_test_finish("test_safetensors");
}
