/* decoder.c - the streaming TAEHV-architecture decoder (docs/MODEL.md section 7).
 *
 * TAEHV's `decoder` nn.Sequential, by index (n = channels, s = space, t = time upscale flags):
 *   0 Clamp  1 conv(C_lat->n0)  2 ReLU  3-5 MemBlock(n0)  6 Upsample  7 TGrow(n0, 1)
 *   8 conv(n0->n1, no bias)   9-11 MemBlock(n1)  12 Upsample  13 TGrow(n1, t0)
 *   14 conv(n1->n2, no bias) 15-17 MemBlock(n2)  18 Upsample  19 TGrow(n2, t1)
 *   20 conv(n2->n3, no bias) 21 ReLU  22 conv(n3->image_channels)
 * We group it into three "stages" (entry conv, 3 MemBlocks, upsample, TGrow) and a head (20-22).
 *
 * Streaming follows TAEHV's apply_model_with_memblocks_sequential: one latent frame at a time,
 * depth first. A TGrow of stride 2 yields two time steps that go through the later layers in time
 * order, so every MemBlock sees its inputs in time order and `past` is simply its previous input.
 * That makes the output independent of how latents are split into chunks.
 *
 * All compute goes through the backend; this file only does pointer arithmetic on backend memory. */
#include "decoder.h"

#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEC_STAGES 3
#define DEC_MEMBLOCKS 3 /* per stage */
#define DEC_CLAMP 3.0f  /* decoder.0: tanh(x/3)*3 */

/* nn.Sequential indices of each stage's layers */
static const int k_conv_idx[DEC_STAGES] = {1, 8, 14};  /* conv entering the stage */
static const int k_mem_idx[DEC_STAGES] = {3, 9, 15};   /* first of its three MemBlocks */
static const int k_tgrow_idx[DEC_STAGES] = {7, 13, 19};
#define DEC_HEAD_CONV 20
#define DEC_OUT_CONV 22

typedef struct dec_memblock {
    const wm_weight *w[3], *b[3]; /* I.conv.0 (2n->n), I.conv.2, I.conv.4 (n->n), 3x3 with bias */
    float *past;                  /* [n, H, W] this block's input at the previous time step */
} dec_memblock;

typedef struct dec_stage {
    int cin, n;                     /* entry conv cin -> n */
    int H, W;                       /* resolution of the entry conv and the MemBlocks */
    int up;                         /* nearest 2x after the MemBlocks */
    int H2, W2;                     /* resolution after the upsample */
    int t;                          /* TGrow stride */
    const wm_weight *conv_w, *conv_b; /* conv_b only for decoder.1 */
    dec_memblock mb[DEC_MEMBLOCKS];
    const wm_weight *tgrow;         /* [t*n, n, 1, 1], no bias */
    float *grow;                    /* [t*n, H2, W2]: channels [k*n, (k+1)*n) are time step k */
} dec_stage;

struct wm_decoder {
    wm_backend *be;
    int c_lat, n3, n_img;
    int H3, W3; /* output resolution */
    int t_up;   /* frames per latent frame */
    dec_stage st[DEC_STAGES];
    const wm_weight *w20, *w22, *b22;
    int64_t to_trim; /* output frames of the stream still to drop */
    /* Work memory shared by all stages: a stage's buffers are dead once its TGrow output (kept in
     * its own `grow`) exists, so the next stage may reuse them. */
    float *arena;
    size_t arena_floats;
    size_t state_floats;
    /* during a push */
    float *out;
    int n_out;
};

/* state blob header; MemBlock pasts follow as fp32 in stage/block order */
typedef struct dec_state_header {
    uint32_t magic, version;
    int64_t to_trim;
} dec_state_header;
#define DEC_STATE_MAGIC 0x43454457u /* "WDEC" */
#define DEC_STATE_VERSION 1u

/* ---- manifest ---- */

static void add_conv(wm_weights *ws, const char *prefix, int cout, int cin, int k, int bias) {
    const int64_t wshape[4] = {cout, cin, k, k}, bshape[1] = {cout};
    wm_weights_add(ws, WM_INIT_WEIGHT, 4, wshape, "%s.weight", prefix);
    if (bias) wm_weights_add(ws, WM_INIT_BIAS, 1, bshape, "%s.bias", prefix);
}

static void stage_channels(const wm_config *cfg, int i, int *cin, int *n, int *t) {
    const wm_decoder_config *dc = &cfg->decoder;
    *cin = i == 0 ? cfg->out_dim : dc->channels[i - 1];
    *n = dc->channels[i];
    /* TAEHV pads the 2-entry decoder_time_upscale with a leading False: TGrow 7 never grows */
    *t = i == 0 ? 1 : (dc->time_upscale[i - 1] ? 2 : 1);
}

void wm_decoder_manifest(const wm_config *cfg, wm_weights *ws) {
    if (!cfg->decoder.present) return;
    const wm_decoder_config *dc = &cfg->decoder;
    char p[64];
    for (int i = 0; i < DEC_STAGES; i++) {
        int cin, n, t;
        stage_channels(cfg, i, &cin, &n, &t);
        snprintf(p, sizeof p, "decoder.%d", k_conv_idx[i]);
        add_conv(ws, p, n, cin, 3, i == 0);
        for (int m = 0; m < DEC_MEMBLOCKS; m++) {
            for (int j = 0; j < 3; j++) {
                snprintf(p, sizeof p, "decoder.%d.conv.%d", k_mem_idx[i] + m, 2 * j);
                add_conv(ws, p, n, j == 0 ? 2 * n : n, 3, 1);
            }
        }
        snprintf(p, sizeof p, "decoder.%d.conv", k_tgrow_idx[i]);
        add_conv(ws, p, t * n, n, 1, 0);
    }
    snprintf(p, sizeof p, "decoder.%d", DEC_HEAD_CONV);
    add_conv(ws, p, dc->channels[3], dc->channels[2], 3, 0);
    snprintf(p, sizeof p, "decoder.%d", DEC_OUT_CONV);
    add_conv(ws, p, dc->image_channels, dc->channels[3], 3, 1);
}

/* ---- construction ---- */

static wm_status get_weight(const wm_weights *ws, const wm_weight **dst, const char *fmt, int a, int b) {
    char name[WM_MAX_TENSOR_NAME];
    snprintf(name, sizeof name, fmt, a, b);
    *dst = wm_weights_get(ws, name);
    if (!*dst) return wm_set_error(WM_ERR_SHAPE, "decoder: tensor '%s' is not bound", name);
    return WM_OK;
}

static float *dec_alloc(wm_decoder *d, size_t n, wm_status *st) {
    if (*st != WM_OK) return NULL;
    float *p = d->be->alloc(d->be, n);
    if (!p) *st = WM_ERR_OUT_OF_MEMORY;
    return p;
}

wm_status wm_decoder_new(wm_decoder **out, const wm_config *cfg, wm_backend *be, const wm_weights *ws) {
    *out = NULL;
    const wm_decoder_config *dc = &cfg->decoder;
    if (!dc->present) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "decoder: the model has no decoder");
    if (cfg->latent_height <= 0 || cfg->latent_width <= 0 || cfg->out_dim <= 0 || dc->image_channels <= 0)
        return wm_set_error(WM_ERR_CONFIG, "decoder: invalid latent or image size");
    for (int i = 0; i < 4; i++)
        if (dc->channels[i] <= 0) return wm_set_error(WM_ERR_CONFIG, "decoder: channels[%d] must be positive", i);

    wm_decoder *d = wm_calloc(1, sizeof *d, "decoder");
    if (!d) return WM_ERR_OUT_OF_MEMORY;
    d->be = be;
    d->c_lat = cfg->out_dim;
    d->n3 = dc->channels[3];
    d->n_img = dc->image_channels;
    d->t_up = 1;

    wm_status st = WM_OK;
    int H = cfg->latent_height, W = cfg->latent_width;
    size_t arena = 0;
    for (int i = 0; i < DEC_STAGES && st == WM_OK; i++) {
        dec_stage *s = &d->st[i];
        stage_channels(cfg, i, &s->cin, &s->n, &s->t);
        s->H = H;
        s->W = W;
        s->up = dc->space_upscale[i] ? 1 : 0;
        s->H2 = H << s->up;
        s->W2 = W << s->up;
        d->t_up *= s->t;
        st = get_weight(ws, &s->conv_w, "decoder.%d.weight", k_conv_idx[i], 0);
        if (st == WM_OK && i == 0) st = get_weight(ws, &s->conv_b, "decoder.%d.bias", k_conv_idx[i], 0);
        for (int m = 0; m < DEC_MEMBLOCKS && st == WM_OK; m++)
            for (int j = 0; j < 3 && st == WM_OK; j++) {
                st = get_weight(ws, &s->mb[m].w[j], "decoder.%d.conv.%d.weight", k_mem_idx[i] + m, 2 * j);
                if (st == WM_OK) st = get_weight(ws, &s->mb[m].b[j], "decoder.%d.conv.%d.bias", k_mem_idx[i] + m, 2 * j);
            }
        if (st == WM_OK) st = get_weight(ws, &s->tgrow, "decoder.%d.conv.weight", k_tgrow_idx[i], 0);

        /* arena layout of a stage: X [n,P] | CAT [2n,P] (stage 0: also the clamped latent) | T [n,P] | U [n,P2] */
        const size_t P = (size_t)H * W, P2 = (size_t)s->H2 * s->W2;
        size_t cat = 2 * (size_t)s->n;
        if (i == 0 && (size_t)d->c_lat > cat) cat = (size_t)d->c_lat;
        size_t need = ((size_t)s->n + cat + s->n) * P + (s->up ? (size_t)s->n * P2 : 0);
        if (need > arena) arena = need;
        H = s->H2;
        W = s->W2;
    }
    d->H3 = H;
    d->W3 = W;
    const size_t P3 = (size_t)H * W;
    if ((size_t)d->n3 * P3 > arena) arena = (size_t)d->n3 * P3;
    d->arena_floats = arena;
    if (st == WM_OK) st = get_weight(ws, &d->w20, "decoder.%d.weight", DEC_HEAD_CONV, 0);
    if (st == WM_OK) st = get_weight(ws, &d->w22, "decoder.%d.weight", DEC_OUT_CONV, 0);
    if (st == WM_OK) st = get_weight(ws, &d->b22, "decoder.%d.bias", DEC_OUT_CONV, 0);

    for (int i = 0; i < DEC_STAGES; i++) {
        dec_stage *s = &d->st[i];
        const size_t P = (size_t)s->H * s->W;
        for (int m = 0; m < DEC_MEMBLOCKS; m++) s->mb[m].past = dec_alloc(d, (size_t)s->n * P, &st);
        s->grow = dec_alloc(d, (size_t)s->t * s->n * s->H2 * s->W2, &st);
        d->state_floats += DEC_MEMBLOCKS * (size_t)s->n * P;
    }
    d->arena = dec_alloc(d, arena, &st);
    if (st != WM_OK) {
        wm_decoder_free(d);
        return st;
    }
    wm_decoder_reset(d);
    *out = d;
    return WM_OK;
}

void wm_decoder_free(wm_decoder *d) {
    if (!d) return;
    wm_backend *be = d->be;
    for (int i = 0; i < DEC_STAGES; i++) {
        for (int m = 0; m < DEC_MEMBLOCKS; m++) be->free(be, d->st[i].mb[m].past);
        be->free(be, d->st[i].grow);
    }
    be->free(be, d->arena);
    free(d);
}

void wm_decoder_reset(wm_decoder *d) {
    /* zero memories = TAEHV's `xt * 0` for the first time step */
    for (int i = 0; i < DEC_STAGES; i++)
        for (int m = 0; m < DEC_MEMBLOCKS; m++)
            d->be->fill(d->be, d->st[i].mb[m].past, 0.0f, (size_t)d->st[i].n * d->st[i].H * d->st[i].W);
    d->to_trim = d->t_up - 1;
}

/* ---- forward ---- */

/* MemBlock: x = ReLU(conv4(ReLU(conv2(ReLU(conv0(cat(x, past)))))) + x), in place on X; past = old x. */
static void memblock(wm_decoder *d, const dec_stage *s, dec_memblock *mb, float *X, float *CAT, float *T) {
    wm_backend *be = d->be;
    const int n = s->n, H = s->H, W = s->W;
    const size_t nP = (size_t)n * H * W;
    float *hi = CAT + nP;
    be->copy(be, CAT, X, nP);      /* cat(x, past) along channels */
    be->copy(be, hi, mb->past, nP);
    be->copy(be, mb->past, X, nP); /* the next time step's past is this input */
    be->conv2d(be, T, CAT, mb->w[0], mb->b[0], 2 * n, n, H, W, 3);
    be->relu(be, T, nP);
    be->conv2d(be, hi, T, mb->w[1], mb->b[1], n, n, H, W, 3);
    be->relu(be, hi, nP);
    be->conv2d(be, X, hi, mb->w[2], mb->b[2], n, n, H, W, 3);
    be->add(be, X, CAT, nP); /* skip is the identity (n_in == n_out) */
    be->relu(be, X, nP);
}

/* decoder.20-22 and the output clamp for one time step g [n2, H3, W3]. */
static void head(wm_decoder *d, const float *g) {
    wm_backend *be = d->be;
    if (d->to_trim > 0) { /* nothing after the last MemBlock has state: skip the work */
        d->to_trim--;
        return;
    }
    const int H = d->H3, W = d->W3;
    const size_t P = (size_t)H * W, n = (size_t)d->n_img * P;
    float *Y = d->arena, *o = d->out + (size_t)d->n_out * n;
    be->conv2d(be, Y, g, d->w20, NULL, d->st[2].n, d->n3, H, W, 3);
    be->relu(be, Y, (size_t)d->n3 * P);
    be->conv2d(be, o, Y, d->w22, d->b22, d->n3, d->n_img, H, W, 3);
    be->clamp(be, o, n, 0.0f, 1.0f);
    d->n_out++;
}

/* Entry conv, MemBlocks, upsample and TGrow of stage i on one time step x [cin, H, W], then the
 * TGrow's time steps in order through the rest of the network. */
static void stage(wm_decoder *d, int i, const float *x) {
    wm_backend *be = d->be;
    dec_stage *s = &d->st[i];
    const size_t P = (size_t)s->H * s->W, P2 = (size_t)s->H2 * s->W2, nP = (size_t)s->n * P;
    float *X = d->arena, *CAT = X + nP;
    size_t cat = 2 * nP;
    if (i == 0 && (size_t)d->c_lat * P > cat) cat = (size_t)d->c_lat * P;
    float *T = CAT + cat, *U = T + nP;
    be->conv2d(be, X, x, s->conv_w, s->conv_b, s->cin, s->n, s->H, s->W, 3);
    if (i == 0) be->relu(be, X, nP); /* decoder.2; stages 1, 2 go straight into a MemBlock */
    for (int m = 0; m < DEC_MEMBLOCKS; m++) memblock(d, s, &s->mb[m], X, CAT, T);
    const float *src = X;
    if (s->up) {
        be->upsample2x(be, U, X, s->n, s->H, s->W);
        src = U;
    }
    be->conv2d(be, s->grow, src, s->tgrow, NULL, s->n, s->t * s->n, s->H2, s->W2, 1);
    for (int k = 0; k < s->t; k++) {
        const float *g = s->grow + (size_t)k * s->n * P2;
        if (i + 1 < DEC_STAGES) stage(d, i + 1, g);
        else head(d, g);
    }
}

int wm_decoder_push(wm_decoder *d, const float *lat, float *out) {
    if (!d || !lat || !out) return -(int)wm_set_error(WM_ERR_INVALID_ARGUMENT, "decoder: NULL argument");
    wm_backend *be = d->be;
    const dec_stage *s = &d->st[0];
    const size_t n = (size_t)d->c_lat * s->H * s->W;
    /* decoder.0 (Clamp) works in place, so clamp a copy; it lives where stage 0 keeps CAT */
    float *a = d->arena + (size_t)s->n * s->H * s->W;
    be->copy(be, a, lat, n);
    be->tanh_clamp(be, a, n, DEC_CLAMP);
    d->out = out;
    d->n_out = 0;
    stage(d, 0, a);
    d->out = NULL;
    return d->n_out;
}

static int push_all(wm_decoder *d, const float *lat, int n, size_t stride, float *out) {
    const size_t img = (size_t)d->n_img * d->H3 * d->W3;
    int total = 0;
    for (int i = 0; i < n; i++) {
        const int k = wm_decoder_push(d, lat + (size_t)i * stride, out + (size_t)total * img);
        if (k < 0) return k;
        total += k;
    }
    return total;
}

int wm_decoder_push_many(wm_decoder *d, const float *lat, int n, size_t stride, float *out) {
    if (!d || !lat || !out || n < 0) return -(int)wm_set_error(WM_ERR_INVALID_ARGUMENT, "decoder: bad argument");
    /* Not recorded as a CUDA graph: decoding starts right after the chunk's last forward has been
     * waited for, so a capture would keep the device idle while the host records ~700 launches
     * (measured on an H100: 36 ms per chunk against 25 launched directly). */
    return push_all(d, lat, n, stride, out);
}

/* ---- state ---- */

size_t wm_decoder_state_size(const wm_decoder *d) {
    return sizeof(dec_state_header) + d->state_floats * sizeof(float);
}

void wm_decoder_state_save(const wm_decoder *d, void *dst) {
    dec_state_header h = {DEC_STATE_MAGIC, DEC_STATE_VERSION, d->to_trim};
    memcpy(dst, &h, sizeof h);
    float *p = (float *)((char *)dst + sizeof h);
    for (int i = 0; i < DEC_STAGES; i++) {
        const size_t nP = (size_t)d->st[i].n * d->st[i].H * d->st[i].W;
        for (int m = 0; m < DEC_MEMBLOCKS; m++, p += nP) d->be->download(d->be, p, d->st[i].mb[m].past, nP);
    }
}

/* The blob must come from wm_decoder_state_save of a decoder of the same config (the caller checks
 * the size). A blob with a wrong header resets the stream rather than loading garbage. */
void wm_decoder_state_load(wm_decoder *d, const void *src) {
    dec_state_header h;
    memcpy(&h, src, sizeof h);
    if (h.magic != DEC_STATE_MAGIC || h.version != DEC_STATE_VERSION || h.to_trim < 0 || h.to_trim >= d->t_up) {
        wm_decoder_reset(d);
        return;
    }
    d->to_trim = h.to_trim;
    const float *p = (const float *)((const char *)src + sizeof h);
    for (int i = 0; i < DEC_STAGES; i++) {
        const size_t nP = (size_t)d->st[i].n * d->st[i].H * d->st[i].W;
        for (int m = 0; m < DEC_MEMBLOCKS; m++, p += nP) d->be->upload(d->be, d->st[i].mb[m].past, p, nP);
    }
}
