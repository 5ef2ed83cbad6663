/* cuda_backend.h - private to plugin/src/cuda/: the CUDA backend's state and its storage formats,
 * shared by backend_cuda.c (memory, weights, K/V, pointwise ops, attention), gemm.c (linear and FFN
 * through cuBLASLt), fused_cuda.c, image_cuda.c + conv_cudnn.c (the decoder's images), graph_cuda.c and
 * accel_cuda.c. Nothing outside this folder includes it. */
#ifndef WM_CUDA_BACKEND_H
#define WM_CUDA_BACKEND_H

#include "backend.h"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <pthread.h>

/* A CUDA weight: an fp32 device copy (biases, norms, modulation, embeddings are read as fp32) and a
 * bf16 copy (what linear multiplies with). The backend interface does not say which use a
 * tensor has, so both copies exist for every weight. */
struct wm_weight {
    float *f32;     /* [n] */
    uint16_t *bf16; /* [n] bf16 bits */
    size_t n;
    /* A copy in another layout that one op derives on first use and owns with the weight (freed
     * with it): img_conv keeps its bf16 KRSC filter here, self_attn_in the q|k|v concatenation on the q
     * weight. derived_bytes counts towards bytes_in_use. */
    void *derived;
    size_t derived_bytes;
};

/* A CUDA K/V store: bf16 rows, [rows, dim] each. */
struct wm_kv {
    uint16_t *k, *v;
    float *bias;     /* [rows] fp32 additive logit bias, NULL until kv_set_bias */
    uint16_t *match; /* [rows, dim] bf16 unit-norm match rows (TempCache), NULL until enabled */
    int64_t rows;
    int dim;
};

/* One cached cuBLASLt plan for y[M,N] = x[M,K] W^T (+ bias): descriptors and the chosen algorithm.
 * Keyed by the shape, the bias flag and the alignments of x and y (the heuristic depends on them). */
typedef struct cuda_lt_plan {
    int M, N, K, bias, y_bf16;     /* y_bf16: y is bf16, else fp32 */
    unsigned align_x, align_y; /* of the bf16 copy of x and of y */
    int ok;                    /* 0: cuBLASLt found no algorithm; use cublasGemmEx */
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
} cuda_lt_plan;

#define CUDA_LT_PLANS     64
#define CUDA_LT_WORKSPACE ((size_t)32 << 20)

typedef struct cuda_alloc {
    void *p;
    size_t bytes;
} cuda_alloc;

typedef struct wm_cudnn wm_cudnn; /* conv_cudnn.c; NULL without cuDNN */

/* graph_cuda.c: capture of a forward into a CUDA graph, and the scratch arena used while capturing */
#define CUDA_GRAPH_SLOTS 8
#define CUDA_GRAPH_KEPT 4 /* recordings kept under a key for replay (a session's decoder needs one) */
typedef struct cuda_arena_entry {
    size_t off, bytes;
    int freed;
} cuda_arena_entry;
typedef struct cuda_graph_state {
    int off[WM_CAPTURE_UNITS];      /* WM_CUDA_GRAPH=0, or given up after repeated failures */
    int capturing, failed;          /* failed: the arena ran out during this capture */
    int unit;                       /* of the capture under way */
    uint64_t key;                   /* of the capture under way; 0: not kept */
    int failures[WM_CAPTURE_UNITS]; /* captures in a row that failed for another reason */
    long calls[WM_CAPTURE_UNITS];   /* capture_begin calls */
    long clock;                     /* all capture_begin calls, for the slots' recency */
    /* executable graphs by node count (a denoising step, the cache pass, a sparse step differ):
     * a capture updates the one of its size, most recently used first */
    struct {
        cudaGraphExec_t exec;
        size_t nodes;
        long used;
    } slot[CUDA_GRAPH_SLOTS];
    /* executable graphs kept for replay, by (unit, key); they point into the arena, so a new arena
     * drops them */
    struct {
        cudaGraphExec_t exec;
        int unit;
        uint64_t key;
        long used;
    } kept[CUDA_GRAPH_KEPT];
    char *arena;            /* scratch while capturing: [size] bytes, a LIFO stack */
    size_t size, top, need; /* need: the most a capture asked for */
    cuda_arena_entry *stack;
    int depth, cap;
} cuda_graph_state;

/* One CUDA backend: the model's (root == NULL), which loads and owns the weights, or a session's fork
 * of it (backend.h's fork), which shares the device and the weights and has everything below of its
 * own except `derive`, which only the root's is used of. A fork is used by one thread at a time. */
typedef struct cuda_impl {
    int device;
    struct cuda_impl *root; /* a fork: the model's backend; NULL on the model's backend itself */
    /* the root's: guards wm_weight.derived (every weight belongs to the root) and root->bytes once
     * forks exist (wm_cu_derive_lock) */
    pthread_mutex_t derive;
    cudaStream_t stream;
    cublasHandle_t blas;
    cublasLtHandle_t lt;
    void *lt_workspace; /* CUDA_LT_WORKSPACE bytes */
    cudaMemPool_t pool; /* op scratch: stream-ordered, kept reserved between ops */
    cuda_alloc *allocs; /* live allocations of be->alloc, for free() and bytes_in_use */
    size_t n_allocs, cap_allocs;
    size_t bytes;   /* be->alloc + K/V stores (+ weights and their derived copies on the root) */
    int attn_naive; /* WM_ATTN=naive at creation: the naive attention kernel instead of flash */
    cuda_lt_plan plans[CUDA_LT_PLANS];
    int n_plans, next_plan;
    wm_cudnn *cudnn;
    /* density counters of AnnSA / AnnCA (device, 4 x u64: attended, total block pairs; selected,
     * total keys), accumulated by the ops' kernels, read and reset by lsh_take_counts */
    unsigned long long *accel_counters;
    cuda_graph_state graph;
} cuda_impl;

static inline cuda_impl *cuda_of(wm_backend *be) { return (cuda_impl *)be->impl; }

/* Records a CUDA / cuBLAS failure (WM_ERR_INTERNAL) in the error message; returns 0 on failure. */
int wm_cu_ok(cudaError_t e, const char *what);
int wm_cublas_ok(cublasStatus_t s, const char *what);
/* cudaMalloc that gives the scratch pool's reserve back and retries once; NULL with
 * WM_ERR_OUT_OF_MEMORY set (not noted as an op failure). */
void *wm_cu_malloc(cuda_impl *c, size_t bytes, const char *what);
/* Stream-ordered scratch from the backend's pool; NULL with WM_ERR_OUT_OF_MEMORY set. */
void *wm_cu_scratch(cuda_impl *c, size_t bytes, const char *what);
void wm_cu_scratch_free(cuda_impl *c, void *p);
/* Derived weight copies (wm_weight.derived) are made on first use by whichever session gets there
 * first, while other sessions may run the same op on other threads: make and read them between
 * wm_cu_derive_lock(c) and wm_cu_derive_unlock(c) (a mutex of the root, shared by its forks), and
 * publish a new one with wm_cu_derive_publish (lock held): it waits for c's stream (the copy was
 * made there; other sessions' streams read it next), then sets w->derived / derived_bytes and
 * counts the bytes with the weights on the root. Returns 0 when the stream failed (nothing
 * published; the caller frees p). */
void wm_cu_derive_lock(cuda_impl *c);
void wm_cu_derive_unlock(cuda_impl *c);
int wm_cu_derive_publish(cuda_impl *c, wm_weight *w, void *p, size_t bytes);
/* Testing hook: the stream a backend (or a fork) runs its ops on. */
cudaStream_t wm_cu_stream(wm_backend *be);

/* conv_cudnn.c (WM_HAVE_CUDNN) */
wm_cudnn *wm_cudnn_new(cudaStream_t stream);
void wm_cudnn_free(wm_cudnn *d);
/* y = conv(x, f) on bf16 NHWC images with a bf16 KRSC filter (image_cuda.c). Returns 1 when cuDNN ran
 * it, 0 to let the caller fall back (no cuDNN, or no plan for this shape). */
int wm_cudnn_conv_nhwc(cuda_impl *c, uint16_t *y, const uint16_t *x, const uint16_t *f, int Cinp, int Coutp, int H,
                       int W, int k);

/* image_cuda.c: sets the img_* ops of the table */
void wm_cu_image_ops(wm_backend *be);

/* gemm.c */
/* y[M,N] = xb[M,K] W[N,K]^T (+ bias[N]) (+ y when accumulate), all device memory; y is bf16 when y_bf16,
 * else fp32, and the bias has y's type: cuBLASLt's epilogue reads it so by default, and an fp32 bias
 * with a bf16 output (CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE) made the FFN's first GEMM 40% slower
 * (H100). Returns 0 on failure (message set). */
int wm_cu_gemm(cuda_impl *c, void *y, int y_bf16, int accumulate, const uint16_t *xb, const uint16_t *W,
               const void *bias, int M, int K, int N);
/* A bf16 copy of x [n] in stream-ordered scratch (free with wm_cu_scratch_free); NULL on failure. */
uint16_t *wm_cu_to_bf16(cuda_impl *c, const float *x, size_t n, const char *what);
/* The FFN (backend.h's ffn) from a bf16 input into y (bf16 when y_bf16, else fp32); the hidden stays
 * bf16 in scratch. Returns 0 on failure. */
int wm_cu_ffn_bf16_in(cuda_impl *c, void *y, int y_bf16, const uint16_t *xb, const wm_weight *W0,
                      const wm_weight *b0, const wm_weight *W2, const wm_weight *b2, int M, int K, int F, int N);
void wm_cu_ffn(wm_backend *be, float *y, const float *x, const wm_weight *W0, const wm_weight *b0,
               const wm_weight *W2, const wm_weight *b2, int M, int K, int F, int N, float *hidden);
void wm_cu_linear(wm_backend *be, float *y, const float *x, const wm_weight *W, const wm_weight *b, int M,
                  int K, int N);
void wm_cu_plans_free(cuda_impl *c);

/* graph_cuda.c */
void wm_cu_graph_init(cuda_impl *c);
void wm_cu_graph_free(cuda_impl *c);
int wm_cu_capture_begin(wm_backend *be, int unit, uint64_t key);
int wm_cu_capture_end(wm_backend *be);
int wm_cu_replay(wm_backend *be, int unit, uint64_t key);
/* While capturing: bytes from the arena (NULL and the capture marked failed when it is full). */
void *wm_cu_arena_take(cuda_impl *c, size_t bytes);
/* Gives p back to the arena; 0 when p is not arena memory. */
int wm_cu_arena_give(cuda_impl *c, void *p);

/* fused_cuda.c: backend.h's fused DiT sub-layers */
void wm_cu_self_attn_in(wm_backend *be, const wm_self_attn_in *a);
void wm_cu_self_attn(wm_backend *be, const wm_self_attn *a);
void wm_cu_cross_attn(wm_backend *be, const wm_cross_attn *a);
void wm_cu_ffn_block(wm_backend *be, const wm_ffn_block *a);

/* accel_cuda.c: TempCache (match plane, kv_match/merge/compact), sign-LSH, AnnSA, AnnCA */
/* Gives the store its match plane (zeroed) if it has none; 0 on failure (noted). */
int wm_cu_match_enable(cuda_impl *c, wm_kv *kv);
void wm_cu_kv_write_match(wm_backend *be, wm_kv *kv, int64_t row, const float *x, int64_t n);
void wm_cu_kv_read_match(wm_backend *be, const wm_kv *kv, float *host, int64_t row, int64_t n);
void wm_cu_kv_load_match(wm_backend *be, wm_kv *kv, const float *host, int64_t row, int64_t n);
void wm_cu_kv_match(wm_backend *be, const wm_kv *kv, int64_t q0, int64_t nq, int64_t c0, int64_t nc, int64_t *best,
                    float *sim);
void wm_cu_kv_merge(wm_backend *be, wm_kv *kv, const int64_t *dst, const int64_t *src, const float *a,
                    const float *b, int64_t n);
void wm_cu_kv_compact(wm_backend *be, wm_kv *kv, const int64_t *keep, int64_t n);
wm_lsh *wm_cu_lsh_new(wm_backend *be, int D, int bits, int tables, const float *proj);
void wm_cu_lsh_free(wm_backend *be, wm_lsh *lsh);
void wm_cu_attention_annsa(wm_backend *be, float *out, const float *q, const wm_kv *kv, int64_t n_cache, int Mq,
                           int H, int D, float scale, const wm_lsh *lsh);
void wm_cu_attention_annca(wm_backend *be, float *out, const float *q, const wm_kv *kv, int64_t n_rows, int Mq,
                           int H, int D, float scale, int group, const wm_lsh *lsh);
void wm_cu_lsh_take_counts(wm_backend *be, double out[4]);
/* Testing hook: bucket codes [nvec][tables] (device) of nvec head vectors at x (device; fp32 when
 * x_is_f32, else bf16), as the ops compute them. Returns 1 on success. */
int wm_cu_lsh_hash(wm_backend *be, const wm_lsh *lsh, uint8_t *codes, const void *x, int x_is_f32, int64_t nvec);
/* Stage timing of attention_annsa (tests, benchmarks; process-wide, not thread-safe): after
 * wm_cu_accel_profile(1), each call records events between its stages (hash, sort, block list,
 * gathers, flash attention, scatter); wm_cu_accel_profile_read waits and gives the last call's
 * stage times in ms, returning how many. */
void wm_cu_accel_profile(int on);
int wm_cu_accel_profile_read(float *ms, int max);

#endif
