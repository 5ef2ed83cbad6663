/* test_decoder.c - the TAEHV decoder (docs/MODEL.md section 7) and the CPU decoder ops.
 *   (a) img_conv (slices, bias, residual, ReLU) / img_upsample2x / img_concat / img_copy / tanh_clamp /
 *       to_rgb8 against naive loops
 *   (b) streaming: one-by-one decoding equals decoding across a reset + state save/load
 *   (c) the streaming decoder against a naive whole-sequence TAEHV (apply_model_with_memblocks_parallel
 *       semantics) on random weights, for two configs
 *   (d) golden: tests/golden/world_window (PyTorch reference), SKIP when absent */
#include "harness.h"

#include "backend.h"
#include "config.h"
#include "decoder.h"
#include "safetensors.h"
#include "weights.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* uniform [-1, 1) */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((g_rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}
static float *rand_buf(size_t n, float scale) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = frand() * scale;
    return p;
}

/* ---- naive ops (double accumulation) ---- */

static void naive_conv(float *y, const float *x, const float *w, const float *b, int Cin, int Cout, int H, int W,
                       int k) {
    const int p = k / 2;
    for (int co = 0; co < Cout; co++)
        for (int r = 0; r < H; r++)
            for (int c = 0; c < W; c++) {
                double s = b ? b[co] : 0.0;
                for (int ci = 0; ci < Cin; ci++)
                    for (int ky = 0; ky < k; ky++)
                        for (int kx = 0; kx < k; kx++) {
                            int sr = r + ky - p, sc = c + kx - p;
                            if (sr < 0 || sr >= H || sc < 0 || sc >= W) continue;
                            s += (double)w[((co * Cin + ci) * k + ky) * k + kx] * x[((size_t)ci * H + sr) * W + sc];
                        }
                y[((size_t)co * H + r) * W + c] = (float)s;
            }
}

static void naive_upsample(float *y, const float *x, int C, int H, int W) {
    for (int c = 0; c < C; c++)
        for (int r = 0; r < 2 * H; r++)
            for (int j = 0; j < 2 * W; j++)
                y[((size_t)c * 2 * H + r) * 2 * W + j] = x[((size_t)c * H + r / 2) * W + j / 2];
}

/* ---- (a) ops ---- */

/* backend memory holding an image [C, H, W] (img_bytes: the backend's own layout) */
static void *img_alloc(wm_backend *be, int C, int H, int W) {
    return be->alloc(be, (be->img_bytes(be, C, H, W) + sizeof(float) - 1) / sizeof(float));
}

/* img_conv of output channels [o0, o0 + Cout) of a weight with `slices` * Cout outputs (o0 = the
 * last slice), with or without bias, residual and ReLU, against naive loops */
static void test_conv_case(wm_backend *be, int Cin, int Cout, int H, int W, int k, int bias, int slices, int res,
                           int relu) {
    const int Ctot = Cout * slices, o0 = Cout * (slices - 1);
    size_t nx = (size_t)Cin * H * W, ny = (size_t)Cout * H * W, nw = (size_t)Ctot * Cin * k * k;
    float *x = rand_buf(nx, 1.0f), *w = rand_buf(nw, 1.0f / sqrtf((float)(Cin * k * k))), *b = rand_buf(Ctot, 0.5f);
    float *r = rand_buf(ny, 1.0f), *ref = malloc(ny * sizeof(float)), *got = malloc(ny * sizeof(float));
    naive_conv(ref, x, w + (size_t)o0 * Cin * k * k, bias ? b + o0 : NULL, Cin, Cout, H, W, k);
    for (size_t i = 0; i < ny; i++) {
        if (res) ref[i] += r[i];
        if (relu && ref[i] < 0) ref[i] = 0;
    }
    wm_weight *Wt = be->weight_new(be, w, nw), *Bt = be->weight_new(be, b, Ctot);
    float *f32 = be->alloc(be, nx > ny ? nx : ny);
    void *ix = img_alloc(be, Cin, H, W), *iy = img_alloc(be, Cout, H, W), *ir = img_alloc(be, Cout, H, W);
    be->upload(be, f32, x, nx);
    be->img_from_f32(be, ix, f32, Cin, H, W);
    be->upload(be, f32, r, ny);
    be->img_from_f32(be, ir, f32, Cout, H, W);
    be->fill(be, iy, NAN, be->img_bytes(be, Cout, H, W) / sizeof(float)); /* every output must be written */
    be->img_conv(be, iy, ix, Wt, bias ? Bt : NULL, o0, Cin, Cout, H, W, k, res ? ir : NULL, relu);
    be->img_to_f32(be, f32, iy, Cout, H, W);
    be->download(be, got, f32, ny);
    char what[96];
    snprintf(what, sizeof what, "conv%dx%d %d->%d %dx%d%s%s%s%s", k, k, Cin, Cout, H, W, bias ? " +b" : "",
             slices > 1 ? " slice" : "", res ? " +res" : "", relu ? " relu" : "");
    wm_test_compare(what, got, ref, ny, 1e-5f, 1e-5f);
    be->free(be, f32);
    be->free(be, ix);
    be->free(be, iy);
    be->free(be, ir);
    be->weight_free(be, Wt);
    be->weight_free(be, Bt);
    free(x); free(w); free(b); free(r); free(ref); free(got);
}

/* upsample2x, concat and copy of images against naive loops (exact) */
static void test_image_moves(wm_backend *be) {
    const int C = 3, H = 5, W = 7;
    const size_t n = (size_t)C * H * W;
    float *x = rand_buf(n, 2.0f), *y = rand_buf(n, 2.0f), *ref = malloc(4 * n * sizeof(float));
    float *got = malloc(4 * n * sizeof(float)), *f32 = be->alloc(be, 4 * n);
    void *ix = img_alloc(be, C, H, W), *iy = img_alloc(be, C, H, W), *io = img_alloc(be, 2 * C, 2 * H, 2 * W);
    be->upload(be, f32, x, n);
    be->img_from_f32(be, ix, f32, C, H, W);
    be->upload(be, f32, y, n);
    be->img_from_f32(be, iy, f32, C, H, W);

    naive_upsample(ref, x, C, H, W);
    be->img_upsample2x(be, io, ix, C, H, W);
    be->img_to_f32(be, f32, io, C, 2 * H, 2 * W);
    be->download(be, got, f32, 4 * n);
    wm_test_compare("img_upsample2x", got, ref, 4 * n, 0, 0);

    memcpy(ref, x, n * sizeof(float));
    memcpy(ref + n, y, n * sizeof(float));
    be->img_concat(be, io, ix, iy, C, H, W);
    be->img_to_f32(be, f32, io, 2 * C, H, W);
    be->download(be, got, f32, 2 * n);
    wm_test_compare("img_concat", got, ref, 2 * n, 0, 0);

    be->img_copy(be, iy, ix, C, H, W);
    be->img_to_f32(be, f32, iy, C, H, W);
    be->download(be, got, f32, n);
    wm_test_compare("img_copy", got, x, n, 0, 0);

    be->free(be, f32);
    be->free(be, ix);
    be->free(be, iy);
    be->free(be, io);
    free(x); free(y); free(ref); free(got);
}

static void test_ops(wm_backend *be) {
    for (int bias = 0; bias < 2; bias++) {
        test_conv_case(be, 5, 7, 9, 11, 3, bias, 1, 0, 0);
        test_conv_case(be, 5, 7, 9, 11, 1, bias, 1, 0, 0);
        test_conv_case(be, 3, 4, 1, 1, 3, bias, 1, 0, 0);  /* every tap but the centre is padding */
        test_conv_case(be, 2, 3, 1, 13, 3, bias, 1, 0, 0); /* one row */
        test_conv_case(be, 5, 7, 9, 11, 3, bias, 1, 1, 1); /* MemBlock's last conv: + skip, ReLU */
        test_conv_case(be, 6, 6, 4, 5, 1, bias, 2, 0, 0);  /* TGrow: the second time step's slice */
    }
    test_conv_case(be, 5, 7, 9, 11, 3, 1, 1, 0, 1);     /* conv + ReLU */
    test_conv_case(be, 64, 16, 150, 100, 3, 1, 1, 0, 0); /* more than one im2col band */
    test_conv_case(be, 32, 64, 20, 24, 1, 0, 1, 0, 0);
    test_image_moves(be);

    const int C = 3, H = 5, W = 7;
    float *x = rand_buf((size_t)C * H * W, 2.0f), *ref = malloc(sizeof(float) * C * H * W);
    float *got = malloc(sizeof(float) * C * H * W), *dx = be->alloc(be, (size_t)C * H * W);

    /* tanh_clamp */
    for (int i = 0; i < C * H * W; i++) ref[i] = tanhf(x[i] * 4.0f / 3.0f) * 3.0f;
    for (int i = 0; i < C * H * W; i++) x[i] *= 4.0f;
    be->upload(be, dx, x, (size_t)C * H * W);
    be->tanh_clamp(be, dx, (size_t)C * H * W, 3.0f);
    be->download(be, got, dx, (size_t)C * H * W);
    wm_test_compare("tanh_clamp", got, ref, (size_t)C * H * W, 1e-6f, 1e-6f);

    /* to_rgb8: clamp, round half to even, NaN -> 0, pitch */
    const float special[] = {-1.0f, 0.0f, 1.0f, 2.0f, NAN, 0.5f / 255.0f, 1.5f / 255.0f, 0.25f};
    for (int i = 0; i < 8; i++) x[i] = special[i];
    be->upload(be, dx, x, (size_t)C * H * W);
    const size_t pitch = 3 * W + 5;
    uint8_t *rgb = calloc(pitch * H, 1);
    be->to_rgb8(be, rgb, pitch, dx, 1, H, W);
    int bad = 0;
    for (int r = 0; r < H; r++)
        for (int j = 0; j < W; j++)
            for (int c = 0; c < 3; c++) {
                float v = x[(c * H + r) * W + j];
                v = isnan(v) ? 0.0f : fminf(fmaxf(v, 0.0f), 1.0f);
                int want = (int)rint(v * 255.0f);
                bad += rgb[r * pitch + 3 * j + c] != want;
            }
    for (int r = 0; r < H; r++)
        for (size_t j = 3 * W; j < pitch; j++) bad += rgb[r * pitch + j] != 0; /* padding untouched */
    CHECK(rgb[0] == 0 && rgb[3] == 0 && rgb[6] == 255 && rgb[9] == 255 && rgb[12] == 0);
    CHECK(bad == 0);
    printf("%-28s %s\n", "to_rgb8", bad ? "MISMATCH" : "ok");
    free(rgb);
    be->free(be, dx);
    free(x); free(ref); free(got);
}

/* ---- naive whole-sequence TAEHV (apply_model_with_memblocks_parallel + decode_video) ---- */

typedef struct seq {
    int T, C, H, W;
    float *d; /* [T, C, H, W] */
} seq;
static seq seq_new(int T, int C, int H, int W) {
    seq s = {T, C, H, W, calloc((size_t)T * C * H * W, sizeof(float))};
    return s;
}
static float *seq_at(seq *s, int t) { return s->d + (size_t)t * s->C * s->H * s->W; }
static size_t seq_fr(const seq *s) { return (size_t)s->C * s->H * s->W; }

static const float *wget(wm_backend *be, const wm_weights *ws, const char *fmt, int a, int b) {
    char name[96];
    snprintf(name, sizeof name, fmt, a, b);
    const wm_weight *w = wm_weights_get(ws, name);
    if (!w) {
        fprintf(stderr, "reference: missing %s\n", name);
        exit(1);
    }
    return be->weight_f32(be, w);
}

static seq ref_conv(wm_backend *be, const wm_weights *ws, seq *x, int idx, int cout, int k, int bias, int relu) {
    seq y = seq_new(x->T, cout, x->H, x->W);
    const float *w = wget(be, ws, k == 1 ? "decoder.%d.conv.weight" : "decoder.%d.weight", idx, 0);
    const float *b = bias ? wget(be, ws, "decoder.%d.bias", idx, 0) : NULL;
    for (int t = 0; t < x->T; t++) naive_conv(seq_at(&y, t), seq_at(x, t), w, b, x->C, cout, x->H, x->W, k);
    if (relu)
        for (size_t i = 0; i < (size_t)y.T * seq_fr(&y); i++) y.d[i] = fmaxf(y.d[i], 0.0f);
    free(x->d);
    return y;
}

static seq ref_memblock(wm_backend *be, const wm_weights *ws, seq *x, int idx) {
    const int n = x->C, H = x->H, W = x->W;
    const size_t fr = seq_fr(x);
    const float *w[3], *b[3];
    for (int j = 0; j < 3; j++) {
        w[j] = wget(be, ws, "decoder.%d.conv.%d.weight", idx, 2 * j);
        b[j] = wget(be, ws, "decoder.%d.conv.%d.bias", idx, 2 * j);
    }
    seq y = seq_new(x->T, n, H, W);
    float *cat = calloc(2 * fr, sizeof(float)), *t1 = malloc(fr * sizeof(float)), *t2 = malloc(fr * sizeof(float));
    for (int t = 0; t < x->T; t++) {
        memcpy(cat, seq_at(x, t), fr * sizeof(float));
        if (t > 0) memcpy(cat + fr, seq_at(x, t - 1), fr * sizeof(float)); /* else zeros (F.pad) */
        naive_conv(t1, cat, w[0], b[0], 2 * n, n, H, W, 3);
        for (size_t i = 0; i < fr; i++) t1[i] = fmaxf(t1[i], 0.0f);
        naive_conv(t2, t1, w[1], b[1], n, n, H, W, 3);
        for (size_t i = 0; i < fr; i++) t2[i] = fmaxf(t2[i], 0.0f);
        naive_conv(t1, t2, w[2], b[2], n, n, H, W, 3);
        float *o = seq_at(&y, t);
        const float *xi = seq_at(x, t);
        for (size_t i = 0; i < fr; i++) o[i] = fmaxf(t1[i] + xi[i], 0.0f);
    }
    free(cat); free(t1); free(t2);
    free(x->d);
    return y;
}

/* returns frames [N_out, 3, H, W] after trimming; *n_out set */
static float *ref_decode(wm_backend *be, const wm_weights *ws, const wm_config *cfg, const float *lat, int T,
                         int *n_out) {
    const wm_decoder_config *dc = &cfg->decoder;
    seq x = seq_new(T, cfg->out_dim, cfg->latent_height, cfg->latent_width);
    for (size_t i = 0; i < (size_t)T * seq_fr(&x); i++) x.d[i] = tanhf(lat[i] / 3.0f) * 3.0f; /* 0 Clamp */
    static const int conv_idx[3] = {1, 8, 14}, mem_idx[3] = {3, 9, 15}, grow_idx[3] = {7, 13, 19};
    int t_up = 1;
    for (int i = 0; i < 3; i++) {
        x = ref_conv(be, ws, &x, conv_idx[i], dc->channels[i], 3, i == 0, i == 0); /* 1 (+2 ReLU), 8, 14 */
        for (int m = 0; m < 3; m++) x = ref_memblock(be, ws, &x, mem_idx[i] + m);
        if (dc->space_upscale[i]) {
            seq u = seq_new(x.T, x.C, 2 * x.H, 2 * x.W);
            for (int t = 0; t < x.T; t++) naive_upsample(seq_at(&u, t), seq_at(&x, t), x.C, x.H, x.W);
            free(x.d);
            x = u;
        }
        const int s = i == 0 ? 1 : (dc->time_upscale[i - 1] ? 2 : 1);
        t_up *= s;
        seq g = ref_conv(be, ws, &x, grow_idx[i], s * dc->channels[i], 1, 0, 0);
        /* TGrow: [T, s*C, H, W] reshaped to [T*s, C, H, W] is the same memory */
        x = (seq){g.T * s, dc->channels[i], g.H, g.W, g.d};
    }
    x = ref_conv(be, ws, &x, 20, dc->channels[3], 3, 0, 1);
    x = ref_conv(be, ws, &x, 22, dc->image_channels, 3, 1, 0);
    const int trim = t_up - 1;
    *n_out = x.T - trim;
    const size_t fr = seq_fr(&x);
    float *out = malloc((size_t)*n_out * fr * sizeof(float));
    for (size_t i = 0; i < (size_t)*n_out * fr; i++) out[i] = fminf(fmaxf(x.d[trim * fr + i], 0.0f), 1.0f);
    free(x.d);
    return out;
}

/* ---- (b), (c) streaming on random weights ---- */

static void small_config(wm_config *cfg, const int ch[4], int s0, int s1, int s2, int t0, int t1) {
    wm_config_defaults(cfg);
    cfg->latent_height = 4;
    cfg->latent_width = 6;
    cfg->decoder.present = 1;
    memcpy(cfg->decoder.channels, ch, sizeof cfg->decoder.channels);
    cfg->decoder.space_upscale[0] = s0;
    cfg->decoder.space_upscale[1] = s1;
    cfg->decoder.space_upscale[2] = s2;
    cfg->decoder.time_upscale[0] = t0;
    cfg->decoder.time_upscale[1] = t1;
    cfg->decoder.image_channels = 3;
}

/* Pushes latents [from, to) and appends the frames to host `frames` at *n (frames of `fr` floats). */
static void push_range(wm_backend *be, wm_decoder *d, const float *dlat, size_t lat_fr, int from, int to,
                       float *dout, float *frames, size_t fr, int *n, int expect_first) {
    for (int f = from; f < to; f++) {
        int k = wm_decoder_push(d, dlat + (size_t)f * lat_fr, dout);
        if (k < 0) {
            fprintf(stderr, "push failed: %s\n", wm_get_error());
            wm_test_failures++;
            return;
        }
        if (f == 0) CHECK(k == expect_first);
        be->download(be, frames + (size_t)*n * fr, dout, (size_t)k * fr);
        *n += k;
    }
}

static void test_streaming(wm_backend *be, const char *label, const wm_config *cfg) {
    wm_weights ws;
    memset(&ws, 0, sizeof ws);
    wm_decoder_manifest(cfg, &ws);
    CHECK_STATUS(wm_weights_random(&ws, be, 1234), WM_OK);
    const int N = 5, t_up = wm_config_time_upscale(cfg), su = wm_config_space_upscale(cfg);
    const size_t lat_fr = (size_t)cfg->out_dim * cfg->latent_height * cfg->latent_width;
    const size_t fr = (size_t)3 * cfg->latent_height * su * cfg->latent_width * su;
    float *lat = rand_buf((size_t)N * lat_fr, 2.0f);
    float *dlat = be->alloc(be, (size_t)N * lat_fr), *dout = be->alloc(be, (size_t)t_up * fr);
    be->upload(be, dlat, lat, (size_t)N * lat_fr);
    const size_t total = (size_t)N * t_up * fr;
    float *a = calloc(total, sizeof(float)), *b = calloc(total, sizeof(float));

    wm_decoder *d = NULL, *d2 = NULL;
    CHECK_STATUS(wm_decoder_new(&d, cfg, be, &ws), WM_OK);
    CHECK_STATUS(wm_decoder_new(&d2, cfg, be, &ws), WM_OK);
    if (!d || !d2) goto done;
    const size_t ss = wm_decoder_state_size(d);
    CHECK(ss == wm_decoder_state_size(d2));

    /* A: one stream, frame by frame */
    int na = 0;
    push_range(be, d, dlat, lat_fr, 0, N, dout, a, fr, &na, 1);
    CHECK(na == N * t_up - (t_up - 1));

    /* B: reset, 2 frames, save, 1 more frame (dirty), reset, garbage, load into another decoder, rest */
    void *blob = malloc(ss), *blob2 = malloc(ss);
    int nb = 0, junk = 0;
    wm_decoder_reset(d);
    push_range(be, d, dlat, lat_fr, 0, 2, dout, b, fr, &nb, 1);
    wm_decoder_state_save(d, blob);
    float *scratch = calloc(total, sizeof(float));
    push_range(be, d, dlat, lat_fr, 4, 5, dout, scratch, fr, &junk, 0);
    push_range(be, d2, dlat, lat_fr, 3, 5, dout, scratch, fr, &junk, 0); /* d2 dirty too */
    wm_decoder_state_load(d2, blob);
    wm_decoder_state_save(d2, blob2);
    CHECK(memcmp(blob, blob2, ss) == 0);
    push_range(be, d2, dlat, lat_fr, 2, 4, dout, b, fr, &nb, 0);
    /* and back into the first decoder for the last frame, through another save/load */
    wm_decoder_state_save(d2, blob);
    wm_decoder_reset(d);
    wm_decoder_state_load(d, blob);
    push_range(be, d, dlat, lat_fr, 4, 5, dout, b, fr, &nb, 0);
    CHECK(nb == na);
    char what[96];
    snprintf(what, sizeof what, "%s stream save/load", label);
    wm_test_compare(what, b, a, (size_t)na * fr, 0, 0);
    free(scratch); free(blob); free(blob2);

    /* C: against the naive whole-sequence decoder */
    int nref = 0;
    float *ref = ref_decode(be, &ws, cfg, lat, N, &nref);
    CHECK(nref == na);
    size_t inside = 0;
    for (size_t i = 0; i < (size_t)nref * fr; i++) inside += ref[i] > 0.01f && ref[i] < 0.99f;
    CHECK(inside > (size_t)nref * fr / 10); /* the comparison is not all clamped values */
    snprintf(what, sizeof what, "%s vs naive", label);
    wm_test_compare(what, a, ref, (size_t)(nref < na ? nref : na) * fr, 1e-5f, 1e-4f);
    printf("  %s: %d latents -> %d frames, %.0f%% of values inside (0,1), state %zu bytes\n", label, N, na,
           100.0 * inside / ((double)nref * fr), ss);
    free(ref);
done:
    wm_decoder_free(d);
    wm_decoder_free(d2);
    be->free(be, dlat);
    be->free(be, dout);
    free(lat); free(a); free(b);
    wm_weights_free(&ws);
}

/* ---- (d) golden ---- */

static void test_golden(wm_backend *be) {
    const char *dir = WM_SOURCE_DIR "/tests/golden/world_window";
    char cfg_path[512], model_path[512], exp_path[512];
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);
    snprintf(model_path, sizeof model_path, "%s/model.safetensors", dir);
    snprintf(exp_path, sizeof exp_path, "%s/expected.safetensors", dir);
    if (access(cfg_path, R_OK) || access(model_path, R_OK) || access(exp_path, R_OK)) {
        printf("SKIP golden: %s not found\n", dir);
        return;
    }
    wm_config cfg;
    memset(&cfg, 0, sizeof cfg);
    CHECK_STATUS(wm_config_load_file(&cfg, cfg_path, "world_window"), WM_OK);
    if (!cfg.decoder.present) {
        printf("SKIP golden: the config has no decoder\n");
        wm_config_free(&cfg);
        return;
    }
    wm_weights ws;
    memset(&ws, 0, sizeof ws);
    wm_decoder_manifest(&cfg, &ws);
    wm_st_file ex;
    memset(&ex, 0, sizeof ex);
    wm_decoder *d = NULL;
    const int failures = wm_test_failures;
    CHECK_STATUS(wm_weights_load(&ws, be, model_path, 1), WM_OK); /* the file holds the DiT too */
    CHECK_STATUS(wm_st_open(&ex, exp_path), WM_OK);
    if (wm_test_failures != failures) goto done;
    CHECK_STATUS(wm_decoder_new(&d, &cfg, be, &ws), WM_OK);
    if (!d) goto done;
    const wm_st_tensor *rgb = wm_st_find(&ex, "rgb");
    CHECK(rgb && rgb->n_dims == 4 && rgb->shape[1] == cfg.decoder.image_channels);
    if (!rgb) goto done;
    const int t_up = wm_config_time_upscale(&cfg), su = wm_config_space_upscale(&cfg);
    const size_t fr = (size_t)cfg.decoder.image_channels * cfg.latent_height * su * cfg.latent_width * su;
    CHECK((size_t)(rgb->shape[1] * rgb->shape[2] * rgb->shape[3]) == fr);
    const size_t lat_fr = (size_t)cfg.out_dim * cfg.latent_height * cfg.latent_width;
    const int64_t n_ref = rgb->shape[0];
    float *want = malloc((size_t)rgb->n_elements * sizeof(float));
    wm_st_to_f32(rgb, want);
    float *got = calloc((size_t)n_ref * fr, sizeof(float));
    float *dlat = be->alloc(be, lat_fr), *dout = be->alloc(be, (size_t)t_up * fr);
    float *host_out = malloc((size_t)t_up * fr * sizeof(float));
    int64_t n_got = 0;
    int chunks = 0, latents = 0;
    for (;; chunks++) {
        char name[32];
        snprintf(name, sizeof name, "latents.%d", chunks);
        const wm_st_tensor *lt = wm_st_find(&ex, name);
        if (!lt) break;
        CHECK(lt->n_dims == 4 && (size_t)(lt->shape[1] * lt->shape[2] * lt->shape[3]) == lat_fr);
        float *lat = malloc((size_t)lt->n_elements * sizeof(float));
        wm_st_to_f32(lt, lat);
        for (int64_t f = 0; f < lt->shape[0]; f++, latents++) {
            be->upload(be, dlat, lat + f * lat_fr, lat_fr);
            int k = wm_decoder_push(d, dlat, dout);
            CHECK(k >= 0);
            if (k <= 0) continue;
            be->download(be, host_out, dout, (size_t)k * fr);
            for (int j = 0; j < k; j++, n_got++)
                if (n_got < n_ref) memcpy(got + n_got * fr, host_out + j * fr, fr * sizeof(float));
        }
        free(lat);
    }
    printf("  golden: %d chunks, %d latent frames -> %lld frames (expected %lld)\n", chunks, latents,
           (long long)n_got, (long long)n_ref);
    CHECK(chunks > 0 && n_got == n_ref);
    const float tol = 1e-4f * wm_test_max_abs(want, (size_t)n_ref * fr);
    wm_test_compare("golden rgb", got, want, (size_t)n_ref * fr, tol, 0);
    free(want); free(got); free(host_out);
    be->free(be, dlat);
    be->free(be, dout);
done:
    wm_decoder_free(d);
    wm_st_close(&ex);
    wm_weights_free(&ws);
    wm_config_free(&cfg);
}

int main(void) {
    wm_backend *be = wm_backend_cpu_new(0);
    if (!be) {
        fprintf(stderr, "no CPU backend: %s\n", wm_get_error());
        return 1;
    }
    test_ops(be);

    wm_config cfg;
    const int ch_a[4] = {8, 6, 5, 4}, ch_b[4] = {6, 7, 5, 3};
    small_config(&cfg, ch_a, 1, 1, 1, 1, 1); /* the TAEW2.1 layout: x8 space, x4 time */
    test_streaming(be, "taew2.1-like", &cfg);
    wm_config_free(&cfg);
    small_config(&cfg, ch_b, 1, 0, 1, 0, 1); /* mixed flags: x4 space, x2 time */
    test_streaming(be, "mixed flags", &cfg);
    wm_config_free(&cfg);
    small_config(&cfg, ch_b, 0, 0, 0, 0, 0); /* no upscaling at all: nothing trimmed */
    test_streaming(be, "no upscale", &cfg);
    wm_config_free(&cfg);

    test_golden(be);
    be->destroy(be);
    return wm_test_finish("test_decoder");
}
