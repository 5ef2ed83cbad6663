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
 * All compute goes through the backend. Activations are backend images (backend.h's img_* ops), in
 * whatever layout the backend keeps them (bf16 channels-last on CUDA); this file only carves them out
 * of backend memory by their byte sizes. Latents come in and RGB goes out as fp32 [C, H, W]. */
#include "decoder.h"

#include "common.h"

#include <stdatomic.h>
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
    void *past;                   /* image [n, H, W]: this block's input at the previous time step */
} dec_memblock;

typedef struct dec_stage {
    int cin, n;                     /* entry conv cin -> n */
    int H, W;                       /* resolution of the entry conv and the MemBlocks */
    int up;                         /* nearest 2x after the MemBlocks */
    int H2, W2;                     /* resolution after the upsample */
    int t;                          /* TGrow stride */
    const wm_weight *conv_w, *conv_b; /* conv_b only for decoder.1 */
    dec_memblock mb[DEC_MEMBLOCKS];
    const wm_weight *tgrow;         /* [t*n, n, 1, 1], no bias: output channels [k*n, (k+1)*n) make time step k */
    char *grow;                     /* t images [n, H2, W2], time step k at k * grow_bytes */
    size_t grow_bytes;
} dec_stage;

struct wm_decoder {
    wm_backend *be;
    uint64_t id; /* unique in the process: part of the key of its recorded work (push_many) */
    int c_lat, n3, n_img;
    int H3, W3; /* output resolution */
    int t_up;   /* frames per latent frame */
    dec_stage st[DEC_STAGES];
    const wm_weight *w20, *w22, *b22;
    int64_t to_trim; /* output frames of the stream still to drop */
    /* Work memory shared by all stages: a stage's buffers are dead once its TGrow output (kept in
     * its own `grow`) exists, so the next stage may reuse them. Stage 0 also keeps the clamped
     * latent here (fp32, then as an image); state save/load stage fp32 pasts here. */
    char *arena;
    size_t arena_bytes;
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

/* ---- work memory ---- */

#define DEC_ALIGN 256 /* bytes: every buffer carved from the arena starts aligned like an allocation */

static size_t align_up(size_t n) { return (n + DEC_ALIGN - 1) / DEC_ALIGN * DEC_ALIGN; }

static size_t img_bytes(const wm_decoder *d, int C, int H, int W) { return d->be->img_bytes(d->be, C, H, W); }

/* A stage's buffers in the arena: x [n] (the MemBlocks work on it in place), cat [2n], t, u [n], up
 * [n, H2, W2] (the upsampled x); stage 0 also in [c_lat] (the latent as an image) and lat (fp32
 * [c_lat, H, W], the clamped copy of the latent). */
typedef struct stage_bufs {
    void *x, *cat, *t, *u, *up, *in;
    float *lat;
} stage_bufs;

/* Lays stage s's buffers out (b == NULL: only measures) and returns the bytes they need. */
static size_t stage_arena(const wm_decoder *d, const dec_stage *s, stage_bufs *b) {
    const int n = s->n, H = s->H, W = s->W;
    const size_t sz[7] = {
        img_bytes(d, n, H, W), img_bytes(d, 2 * n, H, W), img_bytes(d, n, H, W), img_bytes(d, n, H, W),
        s->up ? img_bytes(d, n, s->H2, s->W2) : 0,
        s == &d->st[0] ? img_bytes(d, d->c_lat, H, W) : 0,
        s == &d->st[0] ? (size_t)d->c_lat * H * W * sizeof(float) : 0,
    };
    void **dst[7] = {0};
    if (b) {
        memset(b, 0, sizeof *b);
        void **p[7] = {&b->x, &b->cat, &b->t, &b->u, &b->up, &b->in, (void **)&b->lat};
        memcpy(dst, p, sizeof p);
    }
    size_t off = 0;
    for (int i = 0; i < 7; i++) {
        if (b && sz[i]) *dst[i] = d->arena + off;
        off += align_up(sz[i]);
    }
    /* state save/load stage this stage's pasts as fp32 [n, H, W] at the arena's start */
    const size_t f32 = align_up((size_t)n * H * W * sizeof(float));
    return off > f32 ? off : f32;
}

/* The head's buffers: y [n3, H3, W3] and rgb [image_channels, H3, W3]. */
static size_t head_arena(const wm_decoder *d, void **y, void **rgb) {
    const size_t a = align_up(img_bytes(d, d->n3, d->H3, d->W3));
    if (y) *y = d->arena;
    if (rgb) *rgb = d->arena + a;
    return a + align_up(img_bytes(d, d->n_img, d->H3, d->W3));
}

/* ---- construction ---- */

static wm_status get_weight(const wm_weights *ws, const wm_weight **dst, const char *fmt, int a, int b) {
    char name[WM_MAX_TENSOR_NAME];
    snprintf(name, sizeof name, fmt, a, b);
    *dst = wm_weights_get(ws, name);
    if (!*dst) return wm_set_error(WM_ERR_SHAPE, "decoder: tensor '%s' is not bound", name);
    return WM_OK;
}

/* backend memory of `bytes` (the backend allocates floats) */
static void *dec_alloc(wm_decoder *d, size_t bytes, wm_status *st) {
    if (*st != WM_OK) return NULL;
    void *p = d->be->alloc(d->be, (bytes + sizeof(float) - 1) / sizeof(float));
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
    static atomic_uint_fast64_t next_id = 1;
    d->be = be;
    d->id = atomic_fetch_add(&next_id, 1);
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

        const size_t need = stage_arena(d, s, NULL);
        if (need > arena) arena = need;
        H = s->H2;
        W = s->W2;
    }
    d->H3 = H;
    d->W3 = W;
    const size_t head = head_arena(d, NULL, NULL);
    if (head > arena) arena = head;
    d->arena_bytes = arena;
    if (st == WM_OK) st = get_weight(ws, &d->w20, "decoder.%d.weight", DEC_HEAD_CONV, 0);
    if (st == WM_OK) st = get_weight(ws, &d->w22, "decoder.%d.weight", DEC_OUT_CONV, 0);
    if (st == WM_OK) st = get_weight(ws, &d->b22, "decoder.%d.bias", DEC_OUT_CONV, 0);

    for (int i = 0; i < DEC_STAGES; i++) {
        dec_stage *s = &d->st[i];
        const size_t P = (size_t)s->H * s->W;
        for (int m = 0; m < DEC_MEMBLOCKS; m++) s->mb[m].past = dec_alloc(d, img_bytes(d, s->n, s->H, s->W), &st);
        s->grow_bytes = align_up(img_bytes(d, s->n, s->H2, s->W2));
        s->grow = dec_alloc(d, (size_t)s->t * s->grow_bytes, &st);
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
    /* zero memories = TAEHV's `xt * 0` for the first time step (all-zero bits are a zero image in
     * every backend's layout) */
    for (int i = 0; i < DEC_STAGES; i++) {
        const dec_stage *s = &d->st[i];
        for (int m = 0; m < DEC_MEMBLOCKS; m++)
            d->be->fill(d->be, s->mb[m].past, 0.0f, img_bytes(d, s->n, s->H, s->W) / sizeof(float));
    }
    d->to_trim = d->t_up - 1;
}

/* ---- forward ---- */

/* MemBlock: x = ReLU(conv4(ReLU(conv2(ReLU(conv0(cat(x, past)))))) + x) on X; past = old x. */
static void memblock(wm_decoder *d, const dec_stage *s, dec_memblock *mb, const stage_bufs *b) {
    wm_backend *be = d->be;
    const int n = s->n, H = s->H, W = s->W;
    be->img_concat(be, b->cat, b->x, mb->past, n, H, W);
    be->img_copy(be, mb->past, b->x, n, H, W); /* the next time step's past, and the skip below */
    be->img_conv(be, b->t, b->cat, mb->w[0], mb->b[0], 0, 2 * n, n, H, W, 3, NULL, 1);
    be->img_conv(be, b->u, b->t, mb->w[1], mb->b[1], 0, n, n, H, W, 3, NULL, 1);
    be->img_conv(be, b->x, b->u, mb->w[2], mb->b[2], 0, n, n, H, W, 3, mb->past, 1); /* skip = identity */
}

/* decoder.20-22 and the output clamp for one time step g [n2, H3, W3]. */
static void head(wm_decoder *d, const void *g) {
    wm_backend *be = d->be;
    if (d->to_trim > 0) { /* nothing after the last MemBlock has state: skip the work */
        d->to_trim--;
        return;
    }
    const int H = d->H3, W = d->W3;
    const size_t n = (size_t)d->n_img * H * W;
    void *y, *rgb;
    head_arena(d, &y, &rgb);
    float *o = d->out + (size_t)d->n_out * n;
    be->img_conv(be, y, g, d->w20, NULL, 0, d->st[2].n, d->n3, H, W, 3, NULL, 1); /* + decoder.21 ReLU */
    be->img_conv(be, rgb, y, d->w22, d->b22, 0, d->n3, d->n_img, H, W, 3, NULL, 0);
    be->img_to_f32(be, o, rgb, d->n_img, H, W);
    be->clamp(be, o, n, 0.0f, 1.0f);
    d->n_out++;
}

/* Entry conv, MemBlocks, upsample and TGrow of stage i on one time step x [cin, H, W], then the
 * TGrow's time steps in order through the rest of the network. */
static void stage(wm_decoder *d, int i, const void *x) {
    wm_backend *be = d->be;
    dec_stage *s = &d->st[i];
    stage_bufs b;
    stage_arena(d, s, &b);
    /* decoder.1 has a bias and decoder.2 is a ReLU; stages 1, 2 go straight into a MemBlock */
    be->img_conv(be, b.x, x, s->conv_w, s->conv_b, 0, s->cin, s->n, s->H, s->W, 3, NULL, i == 0);
    for (int m = 0; m < DEC_MEMBLOCKS; m++) memblock(d, s, &s->mb[m], &b);
    const void *src = b.x;
    if (s->up) {
        be->img_upsample2x(be, b.up, b.x, s->n, s->H, s->W);
        src = b.up;
    }
    for (int k = 0; k < s->t; k++) /* TGrow: time step k is output channels [k*n, (k+1)*n) */
        be->img_conv(be, s->grow + k * s->grow_bytes, src, s->tgrow, NULL, k * s->n, s->n, s->n, s->H2, s->W2, 1,
                     NULL, 0);
    for (int k = 0; k < s->t; k++) {
        const void *g = s->grow + k * s->grow_bytes;
        if (i + 1 < DEC_STAGES) stage(d, i + 1, g);
        else head(d, g);
    }
}

int wm_decoder_push(wm_decoder *d, const float *lat, float *out) {
    if (!d || !lat || !out) return -(int)wm_set_error(WM_ERR_INVALID_ARGUMENT, "decoder: NULL argument");
    wm_backend *be = d->be;
    const dec_stage *s = &d->st[0];
    stage_bufs b;
    stage_arena(d, s, &b);
    /* decoder.0 (Clamp) works in place, so clamp a copy */
    be->copy(be, b.lat, lat, (size_t)d->c_lat * s->H * s->W);
    be->tanh_clamp(be, b.lat, (size_t)d->c_lat * s->H * s->W, DEC_CLAMP);
    be->img_from_f32(be, b.in, b.lat, d->c_lat, s->H, s->W);
    d->out = out;
    d->n_out = 0;
    stage(d, 0, b.in);
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

static uint64_t mix(uint64_t h, uint64_t v) { /* splitmix64 of h ^ v */
    uint64_t z = (h ^ v) + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Frames that n latent frames yield, and the trimming left after them (the host side of push_all,
 * for when the backend replays the work instead). */
static int frames_of(const wm_decoder *d, int n, int64_t *to_trim) {
    const int64_t made = (int64_t)n * d->t_up, dropped = made < *to_trim ? made : *to_trim;
    *to_trim -= dropped;
    return (int)(made - dropped);
}

int wm_decoder_push_many(wm_decoder *d, const float *lat, int n, size_t stride, float *out) {
    if (!d || !lat || !out || n < 0) return -(int)wm_set_error(WM_ERR_INVALID_ARGUMENT, "decoder: bad argument");
    /* A chunk's decoding is the same launches on the same memory every chunk (the session decodes
     * from and into the same buffers; the trimming only differs at the start of a stream): the
     * backend records it once under a key of all that varies and replays it (backend.h). A device
     * that starts decoding idle would wait for a recording made anew each chunk (H100: 36 ms per
     * chunk against 25 launched directly), so the first such chunk is the only one recorded. */
    wm_backend *be = d->be;
    uint64_t key = mix(mix(mix(mix(mix(d->id, (uintptr_t)lat), (uintptr_t)out), (uint64_t)n), stride),
                       (uint64_t)d->to_trim);
    key += !key; /* 0 means "not kept" */
    if (be->replay && be->replay(be, WM_CAPTURE_DECODE, key)) return frames_of(d, n, &d->to_trim);
    const int64_t to_trim = d->to_trim;
    const int captured = be->capture_begin && be->capture_begin(be, WM_CAPTURE_DECODE, key);
    int k = push_all(d, lat, n, stride, out);
    if (captured && !be->capture_end(be)) { /* nothing ran: run it directly */
        d->to_trim = to_trim;
        k = push_all(d, lat, n, stride, out);
    }
    return k;
}

/* ---- state ---- */

size_t wm_decoder_state_size(const wm_decoder *d) {
    return sizeof(dec_state_header) + d->state_floats * sizeof(float);
}

/* The pasts are saved as fp32 [n, H, W] whatever the backend's image layout, so a blob is portable
 * between backends; they pass through the arena (free between pushes) on the way. */
void wm_decoder_state_save(const wm_decoder *d, void *dst) {
    dec_state_header h = {DEC_STATE_MAGIC, DEC_STATE_VERSION, d->to_trim};
    memcpy(dst, &h, sizeof h);
    float *p = (float *)((char *)dst + sizeof h), *f32 = (float *)d->arena;
    for (int i = 0; i < DEC_STAGES; i++) {
        const dec_stage *s = &d->st[i];
        const size_t nP = (size_t)s->n * s->H * s->W;
        for (int m = 0; m < DEC_MEMBLOCKS; m++, p += nP) {
            d->be->img_to_f32(d->be, f32, s->mb[m].past, s->n, s->H, s->W);
            d->be->download(d->be, p, f32, nP);
        }
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
    float *f32 = (float *)d->arena;
    for (int i = 0; i < DEC_STAGES; i++) {
        const dec_stage *s = &d->st[i];
        const size_t nP = (size_t)s->n * s->H * s->W;
        for (int m = 0; m < DEC_MEMBLOCKS; m++, p += nP) {
            d->be->upload(d->be, f32, p, nP);
            d->be->img_from_f32(d->be, s->mb[m].past, f32, s->n, s->H, s->W);
        }
    }
}
