/* backend.h - the one interface between the model and the hardware.
 *
 * Model, sampler, decoder and session code call only these functions; they never call BLAS or
 * CUDA. Activation pointers (`float *`) point into memory the backend allocated (host memory on the
 * CPU backend, device memory on CUDA); the model only does pointer arithmetic on them. Weights are
 * opaque `wm_weight` handles, so a backend may keep them in its own format (bf16 on CUDA).
 * Row-major everywhere; "rows" are tokens. All ops are asynchronous with respect to the host on
 * backends that can be; `sync` waits, `download` implies it. A backend is used by one thread at a
 * time: the model's backend loads the weights, each session runs on a fork of it (`fork`). */
#ifndef WM_BACKEND_H
#define WM_BACKEND_H

#include "wm.h"
#include <stddef.h>
#include <stdint.h>

typedef struct wm_weight wm_weight; /* backend-owned tensor of parameters */
/* Key/value rows of one attention layer (self-attention cache, or a prompt's cross-attention K/V),
 * kept in the backend's storage format (fp32 on the CPU, bf16 on CUDA). Rows are `dim` wide. */
typedef struct wm_kv wm_kv;
/* Sign-LSH hash tables for AnnSA/AnnCA (backend-owned projection). */
typedef struct wm_lsh wm_lsh;

/* Arguments of self_attn_in, the self-attention input of a DiT block:
 *   y = layernorm_mod(x; shift, scale, stride, rows_per_group)
 *   q = linear(y; wq, bq); rmsnorm(q; norm_q)
 *   k = linear(y; wk, bk); rmsnorm(k; norm_k)
 *   v = linear(y; wv, bv)
 *   if write_match: kv_write_match(kv, row, k, M)        (pre-RoPE keys, docs/ACCEL.md)
 *   rope(q; H, D, frame0, gh, gw); rope(k; ...)
 *   kv_write(kv, row, k, v, M)
 * q is the output [M, C] (C = H * D); y, k, v are fp32 scratch [M, C] a composing backend may use. */
typedef struct wm_self_attn_in {
    float *q;
    float *x; /* the residual stream: read here, updated by self_attn */
    int M, C, H, D;
    float eps;
    const float *shift, *scale;
    int stride, rows_per_group;
    const wm_weight *wq, *bq, *wk, *bk, *wv, *bv, *norm_q, *norm_k;
    int64_t frame0;
    int gh, gw;
    wm_kv *kv;
    int64_t row;
    int write_match;
    float *y, *k, *v;
} wm_self_attn_in;

/* The recall probe's hook (docs/ACCEL.md): the attention's queries q [Mq, H*D] (backend memory, fp32)
 * and the keys it attends to, rows [0, n_keys) of kv; cross = 1 for the cross-attention. */
typedef void (*wm_attn_probe_fn)(void *user, int cross, const float *q, int Mq, const wm_kv *kv, int64_t n_keys);

/* Arguments of self_attn, the self-attention sub-layer of a DiT block, in place on x = in.x:
 *   self_attn_in(in)
 *   probe(probe_user, 0, in.q, M, in.kv, in.row)                      when probe is set
 *   a = lsh ? attention_annsa(in.q, in.kv, in.row, M, H, D, scale, lsh)
 *           : attention(in.q, in.kv, in.row + M, M, H, D, scale)
 *   h = linear(a; wo, bo);  gated_add(x, h; gate, in.stride, in.rows_per_group)
 * attn, proj: fp32 scratch [M, C] a composing backend may use. */
typedef struct wm_self_attn {
    wm_self_attn_in in;
    float scale;
    const wm_lsh *lsh;
    const wm_weight *wo, *bo;
    const float *gate;
    wm_attn_probe_fn probe;
    void *probe_user;
    float *attn, *proj;
} wm_self_attn;

/* Arguments of cross_attn, the cross-attention sub-layer (no modulation, no RoPE), in place on x:
 *   y = layernorm_affine(x; ln_w, ln_b);  q = linear(y; wq, bq);  rmsnorm(q; norm_q)
 *   probe(probe_user, 1, q, M, ctx, n_ctx)                             when probe is set
 *   a = lsh ? attention_annca(q, ctx, n_ctx, M, H, D, scale, group, lsh)
 *           : attention(q, ctx, n_ctx, M, H, D, scale)
 *   h = linear(a; wo, bo);  add(x, h)
 * q, y, attn, proj: fp32 scratch [M, C] a composing backend may use. */
typedef struct wm_cross_attn {
    float *x;
    int M, C, H, D;
    float eps, scale;
    const wm_weight *ln_w, *ln_b, *wq, *bq, *norm_q, *wo, *bo;
    const wm_kv *ctx;
    int64_t n_ctx;
    const wm_lsh *lsh;
    int group;
    wm_attn_probe_fn probe;
    void *probe_user;
    float *q, *y, *attn, *proj;
} wm_cross_attn;

/* Arguments of ffn_block, the FFN sub-layer of a DiT block, in place on the residual stream x:
 *   y = layernorm_mod(x; shift, scale, stride, rows_per_group)
 *   h = ffn(y; w0, b0, w2, b2)                            (hidden width F)
 *   gated_add(x, h; gate, stride, rows_per_group)
 * y, h: fp32 scratch [M, C]; hidden: fp32 scratch [M, F] (as ffn's). */
typedef struct wm_ffn_block {
    float *x;
    int M, C, F;
    float eps;
    const float *shift, *scale, *gate;
    int stride, rows_per_group;
    const wm_weight *w0, *b0, *w2, *b2;
    float *y, *h, *hidden;
} wm_ffn_block;

/* What capture_begin records (below). */
typedef enum wm_capture_unit { WM_CAPTURE_FORWARD = 0, WM_CAPTURE_DECODE = 1, WM_CAPTURE_UNITS = 2 } wm_capture_unit;

typedef struct wm_backend wm_backend;
struct wm_backend {
    const char *name;
    int kind;             /* wm_backend_kind */
    char device_name[96]; /* e.g. "NVIDIA H100 80GB HBM3", or the CPU's model name */
    void *impl;

    void (*destroy)(wm_backend *be);
    /* Optional (NULL when a backend keeps no per-caller state): a backend of its own for one session,
     * so that sessions on different threads never share mutable state (wm.h's thread-safety rule).
     * A fork shares the device and the weights of `be` (wm_weight handles made by `be` work with it;
     * the fork must not outlive `be`) and starts as a copy of be's table (so wrappers such as the
     * profiler's carry over), with its own impl: on CUDA its own stream, cuBLAS/cuBLASLt/cuDNN
     * handles, GEMM plans, graph state, scratch pool, density counters and allocations. Memory a fork
     * allocates is freed with the same fork; destroy frees the fork (what it still holds with it).
     * bytes_in_use of a fork counts its own memory plus that of `be` (the weights). Returns NULL with
     * the error set on failure. */
    wm_backend *(*fork)(wm_backend *be);
    /* memory */
    float *(*alloc)(wm_backend *be, size_t n_floats); /* NULL on failure (message set) */
    void (*free)(wm_backend *be, void *p);
    void (*upload)(wm_backend *be, float *dst, const float *src, size_t n);
    void (*download)(wm_backend *be, float *dst, const float *src, size_t n);
    void (*copy)(wm_backend *be, float *dst, const float *src, size_t n); /* backend to backend, may overlap */
    void (*fill)(wm_backend *be, float *dst, float value, size_t n);
    void (*sync)(wm_backend *be);
    size_t (*bytes_in_use)(wm_backend *be);

    /* weights: fp32 host data -> backend weight of n elements */
    wm_weight *(*weight_new)(wm_backend *be, const float *host, size_t n);
    void (*weight_free)(wm_backend *be, wm_weight *w);
    const float *(*weight_f32)(wm_backend *be, const wm_weight *w); /* backend pointer to fp32 copy, or NULL */

    /* y[M,N] = x[M,K] @ W[N,K]^T (+ b[N]); W, b are weights; b may be NULL. */
    void (*linear)(wm_backend *be, float *y, const float *x, const wm_weight *W, const wm_weight *b,
                   int M, int K, int N);
    /* The FFN as one op so a backend can keep the hidden activation in its own format:
     * y[M,N] = gelu_tanh(x[M,K] W0[F,K]^T + b0) W2[N,F]^T + b2. hidden: fp32 scratch [M, F] the
     * backend may use (the CPU does; CUDA keeps a bf16 hidden of its own). */
    void (*ffn)(wm_backend *be, float *y, const float *x, const wm_weight *W0, const wm_weight *b0,
                const wm_weight *W2, const wm_weight *b2, int M, int K, int F, int N, float *hidden);
    /* elementwise, in place on n floats */
    void (*silu)(wm_backend *be, float *x, size_t n);
    void (*gelu_tanh)(wm_backend *be, float *x, size_t n);
    void (*relu)(wm_backend *be, float *x, size_t n);
    /* y = a*x + b*y over n (axpby); used by the sampler */
    void (*axpby)(wm_backend *be, float *y, float a, const float *x, float b, size_t n);
    /* y += x */
    void (*add)(wm_backend *be, float *y, const float *x, size_t n);

    /* y = LN(x) * (1 + scale[g]) + shift[g] over rows of C; row r uses group g = r / rows_per_group,
     * scale/shift are backend arrays [groups, *] read at scale + g*stride. No affine when scale and
     * shift are NULL. */
    void (*layernorm_mod)(wm_backend *be, float *y, const float *x, int M, int C, float eps,
                          const float *shift, const float *scale, int stride, int rows_per_group);
    /* y = LN(x) * w + b (weights) */
    void (*layernorm_affine)(wm_backend *be, float *y, const float *x, int M, int C, float eps,
                             const wm_weight *w, const wm_weight *b);
    /* in place: x = x / rms(x) * w over rows of C */
    void (*rmsnorm)(wm_backend *be, float *x, int M, int C, float eps, const wm_weight *w);
    /* in place 3-D RoPE on x[M, H, D]: token r of the chunk is (frame0 + r / (h*w), (r / w) % h, r % w)
     * in a grid of h x w per frame. Layout of pairs: docs/MODEL.md section 3. */
    void (*rope)(wm_backend *be, float *x, int M, int H, int D, int64_t frame0, int gh, int gw);
    /* x[r] += y[r] * gate[g] (gate rows of C at gate + g*stride, g = r / rows_per_group) */
    void (*gated_add)(wm_backend *be, float *x, const float *y, int M, int C, const float *gate,
                      int stride, int rows_per_group);
    /* K/V storage. kv_write stores n rows (fp32 k, v [n, dim]) at `row`; kv_move moves n rows from
     * src to dst (overlap allowed; eviction); kv_read/kv_load copy rows to/from host fp32 (snapshots).
     * A store may carry an additive per-row logit bias (TempCache's log(group size)): kv_set_bias
     * writes host fp32 values for rows [row, row+n) (the first call enables it, other rows 0);
     * kv_move moves it with the rows; kv_get_bias reads it back (zeros when disabled); attention adds
     * it to every head's scaled logits. */
    wm_kv *(*kv_new)(wm_backend *be, int64_t rows, int dim);
    void (*kv_free)(wm_backend *be, wm_kv *kv);
    void (*kv_write)(wm_backend *be, wm_kv *kv, int64_t row, const float *k, const float *v, int64_t n);
    void (*kv_move)(wm_backend *be, wm_kv *kv, int64_t dst, int64_t src, int64_t n);
    /* kv_copy copies n K/V rows of src from src_row to dst at dst_row (two stores; the bias and match
     * planes stay behind: the stores it serves have none), turning each key's time-axis RoPE pairs on
     * by time_shift frames (H heads of D, the pairs and float64 angles of `rope`): a key rotated at
     * frame f arrives rotated at f + time_shift, up to rounding. Rolling Forcing's sink (docs/CONVERT.md)
     * is re-rotated this way; time_shift 0 is a plain copy. */
    void (*kv_copy)(wm_backend *be, wm_kv *dst, int64_t dst_row, const wm_kv *src, int64_t src_row, int64_t n, int H,
                    int D, int64_t time_shift);
    void (*kv_read)(wm_backend *be, const wm_kv *kv, float *k_host, float *v_host, int64_t row, int64_t n);
    void (*kv_load)(wm_backend *be, wm_kv *kv, const float *k_host, const float *v_host, int64_t row, int64_t n);
    void (*kv_set_bias)(wm_backend *be, wm_kv *kv, int64_t row, const float *bias_host, int64_t n);
    void (*kv_get_bias)(wm_backend *be, const wm_kv *kv, float *bias_host, int64_t row, int64_t n);
    /* out[Mq, H*D] = softmax(q K^T * scale + bias) V per head over rows [0, n_rows) of kv. */
    void (*attention)(wm_backend *be, float *out, const float *q, const wm_kv *kv, int64_t n_rows, int Mq,
                      int H, int D, float scale);

    /* ---- TempCache (docs/ACCEL.md): per-row state of a store and the merge primitives ----
     * A store may carry a match plane: a unit-norm copy of each row's pre-RoPE key, used only to find
     * correspondences. kv_write_match normalises rows x[n, dim] (backend memory, fp32) into match rows
     * [row, row+n) (the first call enables the plane; a zero row stays zero). kv_move and kv_compact
     * carry the match plane and the bias with the rows; kv_read_match/kv_load_match copy it to/from
     * host fp32 for snapshots (zeros when disabled). */
    void (*kv_write_match)(wm_backend *be, wm_kv *kv, int64_t row, const float *x, int64_t n);
    void (*kv_read_match)(wm_backend *be, const wm_kv *kv, float *host, int64_t row, int64_t n);
    void (*kv_load_match)(wm_backend *be, wm_kv *kv, const float *host, int64_t row, int64_t n);
    /* Correspondence search: for each match row i in [q0, q0+nq), the row j in [c0, c0+nc) whose
     * match row has the largest dot product (an ANN may return a near-best j: FAISS's 8-bit scalar
     * quantizer on the CPU, a bf16 GEMM on CUDA); best[i-q0] = j (-1 when nc == 0) and sim[i-q0] =
     * the fp32 dot product of the two stored match rows (host arrays). Waits for the device. */
    void (*kv_match)(wm_backend *be, const wm_kv *kv, int64_t q0, int64_t nq, int64_t c0, int64_t nc,
                     int64_t *best, float *sim);
    /* V[dst[i]] = a[i] * V[dst[i]] + b[i] * V[src[i]] for i < n (host arrays; K and the other planes
     * unchanged; no row is both a dst and a src, no dst repeats). The merge of a group into its
     * representative. */
    void (*kv_merge)(wm_backend *be, wm_kv *kv, const int64_t *dst, const int64_t *src, const float *a,
                     const float *b, int64_t n);
    /* Rows keep[0..n) (host, strictly ascending) become rows 0..n-1, every plane with them. */
    void (*kv_compact)(wm_backend *be, wm_kv *kv, const int64_t *keep, int64_t n);

    /* ---- AnnSA / AnnCA (docs/ACCEL.md): sign-LSH buckets and sparse attention ----
     * A wm_lsh holds `tables` hash tables of `bits` sign bits (bits 1..8, tables 1..4) over head
     * vectors of D: proj [tables*bits, D] (host fp32, row t*bits + b) is shared by every head. The
     * bucket of head vector x in table t is sum_b [proj[t*bits+b] . x >= 0] << b (FAISS IndexLSH's
     * sign rule: bit set when the projection is >= 0). Buckets come from the vectors as stored (CUDA
     * hashes the bf16 values), so given the same projections both backends assign the same buckets. */
    wm_lsh *(*lsh_new)(wm_backend *be, int D, int bits, int tables, const float *proj);
    void (*lsh_free)(wm_backend *be, wm_lsh *lsh);
    /* AnnSA: like attention over kv rows [0, n_cache + Mq), where rows [n_cache, n_cache + Mq) are
     * the queries' own chunk, but block-sparse. Per head h: the cache rows [0, n_cache) are ordered by
     * (bucket in table 0, row) (a stable sort), then the chunk rows follow in order; key blocks are
     * 128 consecutive rows of that order. The queries are ordered the same way by their own buckets and
     * cut into 128-row query blocks. Query block qb attends key block kb when kb holds a chunk row, or
     * some table has a bucket that both some query of qb and some key of kb fall in. Softmax (with
     * the store's bias, -inf rows contributing nothing) runs over the attended keys only; the output
     * rows are in the queries' original order. The block pairs go to the density counters. When
     * every key block is attended and no reordering happens (one bucket), the result is bit-identical
     * to `attention` (same blocks in the same order). */
    void (*attention_annsa)(wm_backend *be, float *out, const float *q, const wm_kv *kv, int64_t n_cache,
                            int Mq, int H, int D, float scale, const wm_lsh *lsh);
    /* AnnCA: cross-attention where the queries come in groups of `group` rows (a latent frame): per
     * (group, head), only the kv rows [0, n_rows) whose bucket (any table) matches the bucket of at
     * least one query of the group in the same table take part. A group whose selection is empty gets
     * zero output. */
    void (*attention_annca)(wm_backend *be, float *out, const float *q, const wm_kv *kv, int64_t n_rows,
                            int Mq, int H, int D, float scale, int group, const wm_lsh *lsh);
    /* Density counters since the last call, then reset: out[0..1] = AnnSA attended / total
     * (query block, key block) pairs, out[2..3] = AnnCA selected / total (group, head, key) triples.
     * Waits for the device. */
    void (*lsh_take_counts)(wm_backend *be, double out[4]);
    /* ---- fused sub-layers of the DiT block (docs/MODEL.md section 3) ----
     * Each is, by definition, the composition of the primitives above that its comment spells out;
     * fused_ref.c writes those compositions down once (the CPU backend uses them as they are, and
     * they are what the GPU tests compare against). CUDA fuses them so that the activations between
     * the steps stay in registers or in bf16 instead of making fp32 round trips through memory. */
    /* The sub-layers, their arguments and definitions with the structs above. self_attn_in alone is
     * what the cache pass needs of the last layer (only the keys and values it stores matter). */
    void (*self_attn_in)(wm_backend *be, const wm_self_attn_in *a);
    void (*self_attn)(wm_backend *be, const wm_self_attn *a);
    void (*cross_attn)(wm_backend *be, const wm_cross_attn *a);
    void (*ffn_block)(wm_backend *be, const wm_ffn_block *a);

    /* Optional (NULL where a backend has nothing to gain): the ops called between capture_begin and
     * capture_end are recorded instead of run, then run as one unit (a CUDA graph). capture_begin
     * returns 1 when recording started. capture_end returns 1 when the recorded ops ran; 0 when the
     * recording failed (an op that waits for the device or for host data, an error), in which case
     * none of them ran and the caller calls them again without capture. Between the two, ops must
     * not wait for the device (download, sync, kv_read, kv_match, lsh_take_counts, to_rgb8, ...) nor
     * read host memory that changes before the unit runs (upload). `unit` (wm_capture_unit) names
     * what is recorded: each kind is learnt and given up on separately.
     * key 0: the recording runs once (a DiT forward: recorded anew every time, which costs what
     * launching would, and saves the gaps between kernels). key != 0: the caller promises that every
     * recording under that key is the same ops on the same memory with the same arguments, so the
     * backend may keep it and `replay(be, unit, key)` runs it again without recording; replay
     * returns 0 when it has nothing kept under the key (never recorded, or dropped), and the caller
     * then runs or records the ops itself. Keys must not be reused for other work (the decoder mixes
     * in a number unique to each decoder). */
    int (*capture_begin)(wm_backend *be, int unit, uint64_t key);
    int (*capture_end)(wm_backend *be);
    int (*replay)(wm_backend *be, int unit, uint64_t key);

    /* latents [F, C, Hh, Ww] -> patches [F*(Hh/ph)*(Ww/pw), C*ph*pw] in (c, di, dj) order */
    void (*patchify)(wm_backend *be, float *patches, const float *lat, int F, int C, int Hh, int Ww,
                     int ph, int pw);
    /* inverse of the head: tokens [F*gh*gw, ph*pw*C] ((di, dj, c) order, c fastest) -> [F, C, Hh, Ww] */
    void (*unpatchify)(wm_backend *be, float *lat, const float *tokens, int F, int C, int Hh, int Ww,
                       int ph, int pw);
    /* the DiT's timestep embedding: dst[f, k] = cos(t[f] w_k), dst[f, half + k] = sin(t[f] w_k) with
     * w_k = 10000^(-k/half), half = freq_dim/2, in float64 rounded to fp32; t: host array of F <= 64
     * frames (read before the call returns, so capturable) */
    void (*timestep_sinusoid)(wm_backend *be, float *dst, const float *t, int F, int freq_dim);
    /* Philox normal noise, docs/MODEL.md section 5: dst[i] = normal element i of stream */
    void (*noise)(wm_backend *be, float *dst, size_t n, uint64_t seed, uint64_t stream);

    /* ---- decoder ops on images ----
     * An image is one time step [C, H, W] of the decoder's activations, kept in the backend's own
     * layout and touched only by the img_* ops (the decoder carves them out of its memory by
     * img_bytes): fp32 [C, H, W] on the CPU; bf16 [H, W, Cp] with Cp = C rounded up to 8 (zeros) on
     * CUDA, the layout its tensor-core convolutions read and write, so no op converts between them.
     * fp32 [C, H, W] arrays come in and go out through img_from_f32 / img_to_f32. */
    size_t (*img_bytes)(wm_backend *be, int C, int H, int W);
    void (*img_from_f32)(wm_backend *be, void *img, const float *x, int C, int H, int W);
    void (*img_to_f32)(wm_backend *be, float *x, const void *img, int C, int H, int W);
    /* y[Cout, H, W] = act(conv(x[Cin, H, W]) + b + res), k x k kernel (k = 1 or 3, pad k/2): output
     * channels [o0, o0 + Cout) of W [Ctot, Cin, k, k] (and of b [Ctot], NULL: none), o0 a multiple
     * of Cout (a TGrow's time steps are slices of one weight); res: an image like y or NULL;
     * act = ReLU when relu, else identity. y must not alias x or res. */
    void (*img_conv)(wm_backend *be, void *y, const void *x, const wm_weight *W, const wm_weight *b, int o0,
                     int Cin, int Cout, int H, int Wd, int k, const void *res, int relu);
    void (*img_upsample2x)(wm_backend *be, void *y, const void *x, int C, int H, int W); /* nearest */
    /* y[2C, H, W] = cat(a[C, H, W], b[C, H, W]) along channels */
    void (*img_concat)(wm_backend *be, void *y, const void *a, const void *b, int C, int H, int W);
    void (*img_copy)(wm_backend *be, void *y, const void *x, int C, int H, int W);
    void (*tanh_clamp)(wm_backend *be, float *x, size_t n, float limit);            /* tanh(x/l)*l */
    void (*clamp)(wm_backend *be, float *x, size_t n, float lo, float hi);          /* in place */
    /* n frames to the host, waiting for them: rgb8[i][H, W, 3] = round(clamp(x[i][3, H, W], 0, 1) * 255),
     * frame i at rgb + i * H * pitch (pitch bytes per row) and at x + i * 3 * H * W. One call per
     * chunk's frames, so one wait. */
    void (*to_rgb8)(wm_backend *be, uint8_t *rgb, size_t pitch, const float *x, int n, int H, int W);
    /* Optional: page-lock host memory that to_rgb8 writes often (a session's frame ring), so the
     * device copies into it directly; 0 when it could not (nothing to undo, it still works). */
    int (*pin_host)(wm_backend *be, void *p, size_t bytes);
    void (*unpin_host)(wm_backend *be, void *p);
};

/* Creates the CPU backend (always available). n_threads 0 = all cores. */
wm_backend *wm_backend_cpu_new(int n_threads);
/* Creates the CUDA backend; NULL with WM_ERR_NO_DEVICE / WM_ERR_UNSUPPORTED set when unavailable. */
wm_backend *wm_backend_cuda_new(void);
int wm_backend_cuda_compiled(void);

#endif
