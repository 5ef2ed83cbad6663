/* backend_cuda.c - the CUDA backend: device memory, weights (fp32 + bf16 copies), the bf16 K/V
 * store, attention (our flash kernel, or the naive one with WM_ATTN=naive), and the wiring of the
 * kernels in kernels/ into the wm_backend table. Everything runs in order on one stream per backend;
 * only download, sync, kv_read, to_rgb8 and the rare allocation paths wait for the device. The model's
 * backend loads the weights; each session runs on a fork of it (cu_fork: its own stream, handles,
 * plans, graphs and scratch pool, the weights shared), so sessions on different threads share no
 * mutable state but the weights' derived copies, which the root's mutex guards (wm_cu_derive_lock).
 * Matrix products live in gemm.c. */
#include "attn_naive.cuh"
#include "common.h"
#include "convert.cuh"
#include "cuda_backend.h"
#include "elementwise.cuh"
#include "flash_attn.cuh"
#include "layout.cuh"
#include "noise.cuh"
#include "norm.cuh"
#include "rope.cuh"
#include "timestep.cuh"

#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

/* The flash kernel is another file of kernels/; until it exists, attention uses the naive kernel.
 * -DWM_NO_FLASH forces that; without it, a tree that has no kernels/flash_attn.cu is detected here
 * (kernels/ is on the include path; GCC and Clang have __has_include in C too). An incremental
 * build does not notice the file appearing: touch this file or reconfigure then. */
#if !defined(WM_NO_FLASH) && defined(__has_include)
#if !__has_include("flash_attn.cu")
#define WM_NO_FLASH 1
#endif
#endif

int wm_cu_ok(cudaError_t e, const char *what) {
    if (e == cudaSuccess) return 1;
    cudaGetLastError(); /* clear a non-sticky error so the next op reports its own */
    wm_note_failure(wm_set_error(WM_ERR_INTERNAL, "CUDA error in %s: %s", what, cudaGetErrorString(e)));
    return 0;
}
int wm_cublas_ok(cublasStatus_t s, const char *what) {
    if (s == CUBLAS_STATUS_SUCCESS) return 1;
    wm_note_failure(wm_set_error(WM_ERR_INTERNAL, "cuBLAS error in %s: %s", what, cublasGetStatusString(s)));
    return 0;
}

void *wm_cu_scratch(cuda_impl *c, size_t bytes, const char *what) {
    void *p = NULL;
    if (c->graph.capturing) { /* a graph holds no memory nodes: graph_cuda.c */
        if ((p = wm_cu_arena_take(c, bytes ? bytes : 1))) return p;
        wm_note_failure(WM_ERR_OUT_OF_MEMORY); /* the capture fails and the forward runs again */
        return NULL;
    }
    if (cudaMallocFromPoolAsync(&p, bytes ? bytes : 1, c->pool, c->stream) != cudaSuccess) {
        cudaGetLastError();
        wm_note_failure(WM_ERR_OUT_OF_MEMORY);
        wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of device memory allocating %zu MB of scratch for %s",
                     bytes >> 20, what);
        return NULL;
    }
    return p;
}
void wm_cu_scratch_free(cuda_impl *c, void *p) {
    if (p && !wm_cu_arena_give(c, p)) cudaFreeAsync(p, c->stream);
}

/* cudaMalloc; on failure the scratch pool gives its reserve back and it is tried once more. */
static void *dev_malloc(cuda_impl *c, size_t bytes, const char *what) {
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 1) == cudaSuccess) return p;
    cudaGetLastError();
    cudaStreamSynchronize(c->stream);
    cudaMemPoolTrimTo(c->pool, 0);
    if (c->root) cudaMemPoolTrimTo(c->root->pool, 0); /* the model's pool: thread-safe, only unused memory goes */
    if (cudaMalloc(&p, bytes ? bytes : 1) == cudaSuccess) return p;
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    wm_set_error(WM_ERR_OUT_OF_MEMORY,
                 "out of device memory allocating %zu MB for %s (%zu MB free of %zu MB)", bytes >> 20, what,
                 free_b >> 20, total_b >> 20);
    return NULL;
}

void *wm_cu_malloc(cuda_impl *c, size_t bytes, const char *what) { return dev_malloc(c, bytes, what); }

/* ---- what forks share: the root's weights and their derived copies ---- */

static cuda_impl *root_of(cuda_impl *c) { return c->root ? c->root : c; }

void wm_cu_derive_lock(cuda_impl *c) { pthread_mutex_lock(&root_of(c)->derive); }
void wm_cu_derive_unlock(cuda_impl *c) { pthread_mutex_unlock(&root_of(c)->derive); }

int wm_cu_derive_publish(cuda_impl *c, wm_weight *w, void *p, size_t bytes) {
    /* made on c's stream, read next on any session's: complete before anyone sees the pointer */
    if (!wm_cu_ok(cudaStreamSynchronize(c->stream), "a derived weight copy (sync)")) return 0;
    w->derived = p;
    w->derived_bytes = bytes;
    root_of(c)->bytes += bytes; /* with the weight that owns it (freed by cu_weight_free on the root) */
    return 1;
}

cudaStream_t wm_cu_stream(wm_backend *be) { return cuda_of(be)->stream; }

/* ---- memory ---- */

static float *cu_alloc(wm_backend *be, size_t n) {
    cuda_impl *c = cuda_of(be);
    if (c->n_allocs == c->cap_allocs) {
        size_t cap = c->cap_allocs ? 2 * c->cap_allocs : 64;
        cuda_alloc *a = realloc(c->allocs, cap * sizeof *a);
        if (!a) {
            wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of host memory tracking device allocations");
            return NULL;
        }
        c->allocs = a;
        c->cap_allocs = cap;
    }
    const size_t bytes = (n ? n : 1) * sizeof(float);
    void *p = dev_malloc(c, bytes, "an activation buffer");
    if (!p) return NULL;
    c->allocs[c->n_allocs++] = (cuda_alloc){p, bytes};
    c->bytes += bytes;
    return p;
}
static void cu_free(wm_backend *be, void *p) {
    cuda_impl *c = cuda_of(be);
    if (!p) return;
    for (size_t i = c->n_allocs; i-- > 0;) {
        if (c->allocs[i].p != p) continue;
        c->bytes -= c->allocs[i].bytes;
        c->allocs[i] = c->allocs[--c->n_allocs];
        cudaFree(p); /* waits for the device: the buffer may still be read by queued work */
        return;
    }
}
/* A backend's own device memory: its allocations, its scratch pool's reserve, its cuBLASLt workspace. */
static size_t own_bytes(cuda_impl *c, size_t bytes) {
    uint64_t pool = 0;
    cudaMemPoolGetAttribute(c->pool, cudaMemPoolAttrReservedMemCurrent, &pool);
    return bytes + (size_t)pool + CUDA_LT_WORKSPACE;
}
/* A fork counts its own memory and the model backend's (the weights, which its session uses too), so a
 * session's stats read "device memory for this model and this session". The root's byte count moves
 * under its mutex once forks exist (derived copies). */
static size_t cu_bytes(wm_backend *be) {
    cuda_impl *c = cuda_of(be), *r = root_of(c);
    size_t n = c->root ? own_bytes(c, c->bytes) : 0;
    wm_cu_derive_lock(r);
    const size_t rb = r->bytes;
    wm_cu_derive_unlock(r);
    return n + own_bytes(r, rb);
}

/* Pageable host memory is staged before cudaMemcpyAsync returns (CUDA's "API synchronization
 * behavior"), so the caller may reuse src at once; page-locked memory is read later by the DMA, so
 * then we wait. */
static void cu_upload(wm_backend *be, float *dst, const float *src, size_t n) {
    cuda_impl *c = cuda_of(be);
    if (!n) return;
    wm_cu_ok(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyHostToDevice, c->stream), "upload");
    struct cudaPointerAttributes at;
    if (cudaPointerGetAttributes(&at, src) != cudaSuccess) {
        cudaGetLastError();
        at.type = cudaMemoryTypeHost;
    }
    if (at.type != cudaMemoryTypeUnregistered) cudaStreamSynchronize(c->stream);
}
static void cu_download(wm_backend *be, float *dst, const float *src, size_t n) {
    cuda_impl *c = cuda_of(be);
    if (n)
        wm_cu_ok(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToHost, c->stream), "download");
    wm_cu_ok(cudaStreamSynchronize(c->stream), "download (sync)");
}
static void cu_sync(wm_backend *be) { wm_cu_ok(cudaStreamSynchronize(cuda_of(be)->stream), "sync"); }

/* memmove on the device. cudaMemcpyAsync is undefined for overlapping ranges: copy in pieces no
 * longer than the distance between the ranges (in the order that never overwrites unread source),
 * or, when that would take many pieces, through a scratch buffer. */
static void dev_memmove(cuda_impl *c, void *dst, const void *src, size_t bytes, const char *what) {
    char *d = dst;
    const char *s = src;
    if (!bytes || d == s) return;
    const size_t dist = d > s ? (size_t)(d - s) : (size_t)(s - d);
    if (dist >= bytes) {
        wm_cu_ok(cudaMemcpyAsync(d, s, bytes, cudaMemcpyDeviceToDevice, c->stream), what);
        return;
    }
    if (bytes / dist <= 16) {
        if (d < s) {
            for (size_t o = 0; o < bytes; o += dist) {
                size_t m = bytes - o < dist ? bytes - o : dist;
                wm_cu_ok(cudaMemcpyAsync(d + o, s + o, m, cudaMemcpyDeviceToDevice, c->stream), what);
            }
        } else {
            for (size_t end = bytes; end > 0;) {
                size_t m = end < dist ? end : dist;
                end -= m;
                wm_cu_ok(cudaMemcpyAsync(d + end, s + end, m, cudaMemcpyDeviceToDevice, c->stream), what);
            }
        }
        return;
    }
    void *tmp = wm_cu_scratch(c, bytes, what);
    if (!tmp) return;
    wm_cu_ok(cudaMemcpyAsync(tmp, s, bytes, cudaMemcpyDeviceToDevice, c->stream), what);
    wm_cu_ok(cudaMemcpyAsync(d, tmp, bytes, cudaMemcpyDeviceToDevice, c->stream), what);
    wm_cu_scratch_free(c, tmp);
}

static void cu_copy(wm_backend *be, float *dst, const float *src, size_t n) {
    dev_memmove(cuda_of(be), dst, src, n * sizeof(float), "copy");
}
static void cu_fill(wm_backend *be, float *dst, float v, size_t n) {
    wm_cu_ok(wm_cuda_fill(dst, v, n, cuda_of(be)->stream), "fill");
}

/* ---- weights ---- */

static wm_weight *cu_weight_new(wm_backend *be, const float *host, size_t n) {
    cuda_impl *c = cuda_of(be);
    wm_weight *w = calloc(1, sizeof *w);
    if (!w) {
        wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of host memory for a weight handle");
        return NULL;
    }
    w->n = n;
    w->f32 = dev_malloc(c, (n ? n : 1) * sizeof(float), "a weight (fp32)");
    w->bf16 = w->f32 ? dev_malloc(c, (n ? n : 1) * sizeof(uint16_t), "a weight (bf16)") : NULL;
    if (!w->bf16) {
        if (w->f32) cudaFree(w->f32);
        free(w);
        return NULL;
    }
    int ok =
        !n || (wm_cu_ok(cudaMemcpyAsync(w->f32, host, n * sizeof(float), cudaMemcpyHostToDevice, c->stream),
                        "weight upload") &&
               wm_cu_ok(wm_cuda_f32_to_bf16(w->bf16, w->f32, n, c->stream), "weight to bf16"));
    ok = wm_cu_ok(cudaStreamSynchronize(c->stream), "weight upload (sync)") && ok;
    if (!ok) {
        cudaFree(w->f32);
        cudaFree(w->bf16);
        free(w);
        return NULL;
    }
    c->bytes += (n ? n : 1) * (sizeof(float) + sizeof(uint16_t));
    return w;
}
static void cu_weight_free(wm_backend *be, wm_weight *w) {
    if (!w) return;
    cuda_impl *c = root_of(cuda_of(be)); /* derived copies were counted on the root */
    wm_cu_derive_lock(c);
    c->bytes -= (w->n ? w->n : 1) * (sizeof(float) + sizeof(uint16_t)) + w->derived_bytes;
    wm_cu_derive_unlock(c);
    cudaFree(w->f32);
    cudaFree(w->bf16);
    if (w->derived) cudaFree(w->derived);
    free(w);
}
static const float *cu_weight_f32(wm_backend *be, const wm_weight *w) { return w ? w->f32 : NULL; }

/* ---- pointwise and row ops: straight to kernels/ ---- */

static void cu_silu(wm_backend *be, float *x, size_t n) {
    wm_cu_ok(wm_cuda_silu(x, n, cuda_of(be)->stream), "silu");
}
static void cu_gelu_tanh(wm_backend *be, float *x, size_t n) {
    wm_cu_ok(wm_cuda_gelu_tanh(x, n, cuda_of(be)->stream), "gelu_tanh");
}
static void cu_relu(wm_backend *be, float *x, size_t n) {
    wm_cu_ok(wm_cuda_relu(x, n, cuda_of(be)->stream), "relu");
}
static void cu_axpby(wm_backend *be, float *y, float a, const float *x, float b, size_t n) {
    wm_cu_ok(wm_cuda_axpby(y, a, x, b, n, cuda_of(be)->stream), "axpby");
}
static void cu_add(wm_backend *be, float *y, const float *x, size_t n) {
    wm_cu_ok(wm_cuda_add(y, x, n, cuda_of(be)->stream), "add");
}
static void cu_layernorm_mod(wm_backend *be, float *y, const float *x, int M, int C, float eps,
                             const float *shift, const float *scale, int stride, int rows_per_group) {
    wm_cu_ok(
        wm_cuda_layernorm_mod(y, x, M, C, eps, shift, scale, stride, rows_per_group, cuda_of(be)->stream),
        "layernorm_mod");
}
static void cu_layernorm_affine(wm_backend *be, float *y, const float *x, int M, int C, float eps,
                                const wm_weight *w, const wm_weight *b) {
    wm_cu_ok(
        wm_cuda_layernorm_affine(y, x, M, C, eps, w ? w->f32 : NULL, b ? b->f32 : NULL, cuda_of(be)->stream),
        "layernorm_affine");
}
static void cu_rmsnorm(wm_backend *be, float *x, int M, int C, float eps, const wm_weight *w) {
    wm_cu_ok(wm_cuda_rmsnorm(x, M, C, eps, w ? w->f32 : NULL, cuda_of(be)->stream), "rmsnorm");
}
static void cu_rope(wm_backend *be, float *x, int M, int H, int D, int64_t frame0, int gh, int gw) {
    wm_cu_ok(wm_cuda_rope(x, M, H, D, frame0, gh, gw, cuda_of(be)->stream), "rope");
}
static void cu_gated_add(wm_backend *be, float *x, const float *y, int M, int C, const float *gate,
                         int stride, int rows_per_group) {
    wm_cu_ok(wm_cuda_gated_add(x, y, M, C, gate, stride, rows_per_group, cuda_of(be)->stream), "gated_add");
}
static void cu_patchify(wm_backend *be, float *patches, const float *lat, int F, int C, int Hh, int Ww,
                        int ph, int pw) {
    wm_cu_ok(wm_cuda_patchify(patches, lat, F, C, Hh, Ww, ph, pw, cuda_of(be)->stream), "patchify");
}
static void cu_unpatchify(wm_backend *be, float *lat, const float *tokens, int F, int C, int Hh, int Ww,
                          int ph, int pw) {
    wm_cu_ok(wm_cuda_unpatchify(lat, tokens, F, C, Hh, Ww, ph, pw, cuda_of(be)->stream), "unpatchify");
}
static void cu_timestep_sinusoid(wm_backend *be, float *dst, const float *t, int F, int freq_dim) {
    wm_cu_ok(wm_cuda_timestep_sinusoid(dst, t, F, freq_dim, cuda_of(be)->stream), "timestep_sinusoid");
}
static void cu_noise(wm_backend *be, float *dst, size_t n, uint64_t seed, uint64_t stream) {
    wm_cu_ok(wm_cuda_noise(dst, n, seed, stream, 0, cuda_of(be)->stream), "noise");
}
static void cu_tanh_clamp(wm_backend *be, float *x, size_t n, float limit) {
    wm_cu_ok(wm_cuda_tanh_clamp(x, n, limit, cuda_of(be)->stream), "tanh_clamp");
}
static void cu_clamp(wm_backend *be, float *x, size_t n, float lo, float hi) {
    wm_cu_ok(wm_cuda_clamp(x, n, lo, hi, cuda_of(be)->stream), "clamp");
}
/* All n frames converted on the device, then one copy of n*H rows (frame i's rows follow frame i-1's
 * in both layouts) and one wait. Into page-locked memory (pin_host: a session's frame ring) the copy
 * is a direct DMA; into pageable memory the driver stages it, at a fraction of the speed (H100: 0.67
 * ms per 480x832 frame, most of the decoder's time per chunk, before frames were pinned and batched). */
static void cu_to_rgb8(wm_backend *be, uint8_t *rgb, size_t pitch, const float *x, int n, int H, int W) {
    cuda_impl *c = cuda_of(be);
    const size_t row = (size_t)W * 3, frame = row * (size_t)H;
    if (n <= 0 || H <= 0 || W <= 0) return;
    uint8_t *tmp = wm_cu_scratch(c, frame * (size_t)n, "to_rgb8");
    if (!tmp) return;
    int ok = 1;
    for (int i = 0; ok && i < n; i++)
        ok = wm_cu_ok(wm_cuda_to_rgb8(tmp + (size_t)i * frame, x + (size_t)i * 3 * H * W, H, W, c->stream), "to_rgb8");
    if (ok)
        wm_cu_ok(cudaMemcpy2DAsync(rgb, pitch, tmp, row, row, (size_t)n * H, cudaMemcpyDeviceToHost, c->stream),
                 "to_rgb8 (download)");
    wm_cu_scratch_free(c, tmp);
    wm_cu_ok(cudaStreamSynchronize(c->stream), "to_rgb8 (sync)");
}

static int cu_pin_host(wm_backend *be, void *p, size_t bytes) {
    (void)be;
    if (!p || !bytes) return 0;
    if (cudaHostRegister(p, bytes, cudaHostRegisterDefault) == cudaSuccess) return 1;
    cudaGetLastError(); /* not an error for the caller: the memory just stays pageable */
    return 0;
}

static void cu_unpin_host(wm_backend *be, void *p) {
    (void)be;
    if (p && cudaHostUnregister(p) != cudaSuccess) cudaGetLastError();
}

/* ---- K/V store ---- */

static wm_kv *cu_kv_new(wm_backend *be, int64_t rows, int dim) {
    cuda_impl *c = cuda_of(be);
    wm_kv *kv = calloc(1, sizeof *kv);
    if (!kv) {
        wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of host memory for a K/V handle");
        return NULL;
    }
    const size_t bytes = (size_t)(rows > 0 ? rows : 1) * (size_t)dim * sizeof(uint16_t);
    kv->rows = rows;
    kv->dim = dim;
    kv->k = dev_malloc(c, bytes, "the K cache");
    kv->v = kv->k ? dev_malloc(c, bytes, "the V cache") : NULL;
    if (!kv->v) {
        if (kv->k) cudaFree(kv->k);
        free(kv);
        return NULL;
    }
    /* zeroed so that rows never written read as 0, not as NaN garbage */
    wm_cu_ok(cudaMemsetAsync(kv->k, 0, bytes, c->stream), "kv_new");
    wm_cu_ok(cudaMemsetAsync(kv->v, 0, bytes, c->stream), "kv_new");
    c->bytes += 2 * bytes;
    return kv;
}
static void cu_kv_free(wm_backend *be, wm_kv *kv) {
    if (!kv) return;
    cuda_impl *c = cuda_of(be);
    c->bytes -= 2 * (size_t)(kv->rows > 0 ? kv->rows : 1) * (size_t)kv->dim * sizeof(uint16_t);
    cudaFree(kv->k);
    cudaFree(kv->v);
    if (kv->bias) {
        c->bytes -= (size_t)(kv->rows > 0 ? kv->rows : 1) * sizeof(float);
        cudaFree(kv->bias);
    }
    if (kv->match) {
        c->bytes -= (size_t)(kv->rows > 0 ? kv->rows : 1) * (size_t)kv->dim * sizeof(uint16_t);
        cudaFree(kv->match);
    }
    free(kv);
}
static void cu_kv_write(wm_backend *be, wm_kv *kv, int64_t row, const float *k, const float *v, int64_t n) {
    cuda_impl *c = cuda_of(be);
    const size_t off = (size_t)row * kv->dim, cnt = (size_t)n * kv->dim;
    wm_cu_ok(wm_cuda_f32_to_bf16(kv->k + off, k, cnt, c->stream), "kv_write (k)");
    wm_cu_ok(wm_cuda_f32_to_bf16(kv->v + off, v, cnt, c->stream), "kv_write (v)");
}
static void cu_kv_move(wm_backend *be, wm_kv *kv, int64_t dst, int64_t src, int64_t n) {
    cuda_impl *c = cuda_of(be);
    const size_t d = (size_t)dst * kv->dim, s = (size_t)src * kv->dim,
                 bytes = (size_t)n * kv->dim * sizeof(uint16_t);
    dev_memmove(c, kv->k + d, kv->k + s, bytes, "kv_move (k)");
    dev_memmove(c, kv->v + d, kv->v + s, bytes, "kv_move (v)");
    if (kv->bias)
        dev_memmove(c, kv->bias + dst, kv->bias + src, (size_t)n * sizeof(float), "kv_move (bias)");
    if (kv->match) dev_memmove(c, kv->match + d, kv->match + s, bytes, "kv_move (match)");
}
static void cu_kv_copy(wm_backend *be, wm_kv *dst, int64_t dst_row, const wm_kv *src, int64_t src_row, int64_t n, int H,
                       int D, int64_t time_shift) {
    cuda_impl *c = cuda_of(be);
    const size_t d = (size_t)dst_row * dst->dim, s = (size_t)src_row * src->dim, cnt = (size_t)n * dst->dim;
    wm_cu_ok(cudaMemcpyAsync(dst->v + d, src->v + s, cnt * sizeof(uint16_t), cudaMemcpyDeviceToDevice, c->stream),
             "kv_copy (v)");
    if (time_shift == 0)
        wm_cu_ok(cudaMemcpyAsync(dst->k + d, src->k + s, cnt * sizeof(uint16_t), cudaMemcpyDeviceToDevice, c->stream),
                 "kv_copy (k)");
    else
        wm_cu_ok(wm_cuda_kv_rope_shift(dst->k + d, src->k + s, n, H, D, time_shift, c->stream), "kv_copy (k)");
}
static void cu_kv_set_bias(wm_backend *be, wm_kv *kv, int64_t row, const float *bias, int64_t n) {
    cuda_impl *c = cuda_of(be);
    if (!kv->bias) {
        const size_t bytes = (size_t)(kv->rows > 0 ? kv->rows : 1) * sizeof(float);
        if (!(kv->bias = dev_malloc(c, bytes, "the K/V bias"))) {
            wm_note_failure(WM_ERR_OUT_OF_MEMORY);
            return;
        }
        c->bytes += bytes;
        wm_cu_ok(cudaMemsetAsync(kv->bias, 0, bytes, c->stream), "kv_set_bias");
    }
    wm_cu_ok(cudaMemcpyAsync(kv->bias + row, bias, (size_t)n * sizeof(float), cudaMemcpyHostToDevice, c->stream),
             "kv_set_bias");
    wm_cu_ok(cudaStreamSynchronize(c->stream), "kv_set_bias (sync)"); /* the host array may be reused */
}
static void cu_kv_get_bias(wm_backend *be, const wm_kv *kv, float *bias, int64_t row, int64_t n) {
    cuda_impl *c = cuda_of(be);
    if (!kv->bias) {
        memset(bias, 0, (size_t)n * sizeof(float));
        return;
    }
    wm_cu_ok(cudaMemcpyAsync(bias, kv->bias + row, (size_t)n * sizeof(float), cudaMemcpyDeviceToHost, c->stream),
             "kv_get_bias");
    wm_cu_ok(cudaStreamSynchronize(c->stream), "kv_get_bias (sync)");
}
/* host fp32 <-> device bf16 through an fp32 scratch on the device, converted by the same kernels as
 * kv_write, so that kv_load(x) stores exactly what kv_write(x) would */
static void cu_kv_read(wm_backend *be, const wm_kv *kv, float *k_host, float *v_host, int64_t row,
                       int64_t n) {
    cuda_impl *c = cuda_of(be);
    const size_t off = (size_t)row * kv->dim, cnt = (size_t)n * kv->dim;
    if (!cnt) return;
    float *tmp = wm_cu_scratch(c, 2 * cnt * sizeof(float), "kv_read");
    if (!tmp) return;
    wm_cu_ok(wm_cuda_bf16_to_f32(tmp, kv->k + off, cnt, c->stream), "kv_read (k)");
    wm_cu_ok(wm_cuda_bf16_to_f32(tmp + cnt, kv->v + off, cnt, c->stream), "kv_read (v)");
    wm_cu_ok(cudaMemcpyAsync(k_host, tmp, cnt * sizeof(float), cudaMemcpyDeviceToHost, c->stream), "kv_read");
    wm_cu_ok(cudaMemcpyAsync(v_host, tmp + cnt, cnt * sizeof(float), cudaMemcpyDeviceToHost, c->stream),
             "kv_read");
    wm_cu_scratch_free(c, tmp);
    wm_cu_ok(cudaStreamSynchronize(c->stream), "kv_read (sync)");
}
static void cu_kv_load(wm_backend *be, wm_kv *kv, const float *k_host, const float *v_host, int64_t row,
                       int64_t n) {
    cuda_impl *c = cuda_of(be);
    const size_t off = (size_t)row * kv->dim, cnt = (size_t)n * kv->dim;
    if (!cnt) return;
    float *tmp = wm_cu_scratch(c, 2 * cnt * sizeof(float), "kv_load");
    if (!tmp) return;
    wm_cu_ok(cudaMemcpyAsync(tmp, k_host, cnt * sizeof(float), cudaMemcpyHostToDevice, c->stream), "kv_load");
    wm_cu_ok(cudaMemcpyAsync(tmp + cnt, v_host, cnt * sizeof(float), cudaMemcpyHostToDevice, c->stream),
             "kv_load");
    wm_cu_ok(wm_cuda_f32_to_bf16(kv->k + off, tmp, cnt, c->stream), "kv_load (k)");
    wm_cu_ok(wm_cuda_f32_to_bf16(kv->v + off, tmp + cnt, cnt, c->stream), "kv_load (v)");
    wm_cu_scratch_free(c, tmp);
    wm_cu_ok(cudaStreamSynchronize(c->stream), "kv_load (sync)"); /* the host arrays may be pinned */
}

/* ---- attention ---- */

static void cu_attention(wm_backend *be, float *out, const float *q, const wm_kv *kv, int64_t n_rows, int Mq,
                         int H, int D, float scale) {
    cuda_impl *c = cuda_of(be);
    if (Mq <= 0) return;
    if ((int64_t)H * D != kv->dim || n_rows > kv->rows || n_rows < 0 || n_rows > INT32_MAX) {
        wm_set_error(WM_ERR_INTERNAL,
                     "attention: %d heads x %d do not fit K/V rows of %d (n_rows %lld of %lld)", H, D,
                     kv->dim, (long long)n_rows, (long long)kv->rows);
        return;
    }
    const int64_t ld = (int64_t)H * D;
    if (n_rows == 0) { /* no keys: zero rows, as the CPU's empty sums give */
        wm_cu_ok(wm_cuda_fill(out, 0.0f, (size_t)Mq * ld, c->stream), "attention (no keys)");
        return;
    }
#ifndef WM_NO_FLASH
    if (!c->attn_naive) {
        uint16_t *qb = wm_cu_scratch(c, (size_t)Mq * ld * sizeof(uint16_t), "attention q (bf16)");
        if (!qb) return;
        int done = 0;
        if (wm_cu_ok(wm_cuda_f32_to_bf16(qb, q, (size_t)Mq * ld, c->stream), "attention: convert q")) {
            wm_fa_args a = {0};
            a.q = qb, a.ldq = ld;
            a.k = kv->k, a.v = kv->v, a.ldkv = kv->dim;
            a.out = out, a.ldo = ld;
            a.Mq = Mq, a.Mk = (int)n_rows, a.H = H, a.D = D;
            a.scale = scale;
            a.key_bias = kv->bias, a.bias_head_stride = 0; /* one bias per row, shared by the heads */
            done = wm_flash_attn(&a, c->stream) == 0; /* -1: a shape it does not take; the naive one does */
        }
        wm_cu_scratch_free(c, qb);
        if (done) return;
    }
#endif
    wm_cu_ok(wm_cuda_attn_naive(out, ld, q, ld, kv->k, kv->v, kv->dim, Mq, (int)n_rows, H, D, scale, kv->bias, 0,
                                c->stream),
             "attention (naive)");
}

/* ---- lifetime ---- */

static void impl_free(cuda_impl *c) {
    if (c->stream) cudaStreamSynchronize(c->stream);
    wm_cu_graph_free(c);
    wm_cu_plans_free(c);
#ifdef WM_HAVE_CUDNN
    wm_cudnn_free(c->cudnn);
#endif
    for (size_t i = 0; i < c->n_allocs; i++) cudaFree(c->allocs[i].p);
    free(c->allocs);
    if (c->accel_counters) cudaFree(c->accel_counters);
    if (c->pool) cudaMemPoolDestroy(c->pool);
    if (c->lt_workspace) cudaFree(c->lt_workspace);
    if (c->lt) cublasLtDestroy(c->lt);
    if (c->blas) cublasDestroy(c->blas);
    if (c->stream) cudaStreamDestroy(c->stream);
    if (!c->root) pthread_mutex_destroy(&c->derive);
    free(c);
}

/* The model's backend and a session's fork alike (a fork's weights stay with the root). */
static void cu_destroy(wm_backend *be) {
    impl_free(cuda_of(be));
    free(be);
}

/* Opens the current device (root NULL), or a fork of root on root's device: stream, cuBLAS handles,
 * scratch pool, cuBLASLt workspace, cuDNN; then runs one tiny kernel, so a device this build has no
 * kernels for is refused here rather than at the first op. */
static int impl_init(cuda_impl *c, cuda_impl *root) {
    cudaError_t e = cudaSuccess;
    c->root = root;
    if (root) c->device = root->device;
    if ((!root && (e = cudaGetDevice(&c->device)) != cudaSuccess) ||
        (e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        cudaGetLastError();
        wm_set_error(WM_ERR_NO_DEVICE, "CUDA device unusable: %s", cudaGetErrorString(e));
        return 0;
    }
    int pools = 0;
    cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, c->device);
    struct cudaMemPoolProps props;
    memset(&props, 0, sizeof props);
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = c->device;
    if (!pools || cudaMemPoolCreate(&c->pool, &props) != cudaSuccess) {
        cudaGetLastError();
        c->pool = NULL;
        wm_set_error(WM_ERR_UNSUPPORTED, "CUDA device %d has no stream-ordered memory pools", c->device);
        return 0;
    }
    uint64_t keep = UINT64_MAX; /* keep freed scratch reserved: ops reuse it without cudaMalloc */
    cudaMemPoolSetAttribute(c->pool, cudaMemPoolAttrReleaseThreshold, &keep);
    if (cublasCreate(&c->blas) != CUBLAS_STATUS_SUCCESS || cublasLtCreate(&c->lt) != CUBLAS_STATUS_SUCCESS) {
        wm_set_error(WM_ERR_NO_DEVICE, "cuBLAS could not be initialised on CUDA device %d", c->device);
        return 0;
    }
    cublasSetStream(c->blas, c->stream);
    if (!(c->lt_workspace = dev_malloc(c, CUDA_LT_WORKSPACE, "the cuBLASLt workspace"))) return 0;
    if (!(c->accel_counters = dev_malloc(c, 4 * sizeof(unsigned long long), "the density counters"))) return 0;
    if (cudaMemsetAsync(c->accel_counters, 0, 4 * sizeof(unsigned long long), c->stream) != cudaSuccess)
        cudaGetLastError(); /* a device that cannot run this build is reported just below */
    e = wm_cuda_fill((float *)c->lt_workspace, 0.0f, 1, c->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess) {
        cudaGetLastError();
        struct cudaDeviceProp prop;
        memset(&prop, 0, sizeof prop);
        cudaGetDeviceProperties(&prop, c->device);
        wm_set_error(WM_ERR_UNSUPPORTED, "CUDA device %d (%s, sm_%d%d) cannot run this build's kernels: %s",
                     c->device, prop.name, prop.major, prop.minor, cudaGetErrorString(e));
        return 0;
    }
#ifdef WM_HAVE_CUDNN
    /* convolutions through cuDNN unless WM_CONV=im2col; without a usable cuDNN, im2col + cuBLAS. A
     * fork follows the root's choice, with a handle on its own stream. */
    const char *conv = getenv("WM_CONV");
    if (root ? root->cudnn != NULL : !(conv && strcmp(conv, "im2col") == 0)) c->cudnn = wm_cudnn_new(c->stream);
#endif
    wm_cu_graph_init(c);
    const char *attn = getenv("WM_ATTN");
    c->attn_naive = root ? root->attn_naive : attn && strcmp(attn, "naive") == 0;
#ifndef WM_NO_FLASH
    /* the flash kernel caches what the device supports on first use: fill that cache now, on the
     * loading thread, rather than in a race between sessions' threads */
    if (!root) (void)wm_flash_attn_has_wgmma();
#endif
    return 1;
}

/* backend.h's fork: a session's backend on the same device and weights. The fork's stream does not
 * wait for the root's, so whatever the root has queued (the weights are uploaded synchronously
 * already) is finished first. */
static wm_backend *cu_fork(wm_backend *be) {
    cuda_impl *root = root_of(cuda_of(be));
    wm_backend *f = malloc(sizeof *f);
    cuda_impl *c = calloc(1, sizeof *c);
    if (!f || !c) {
        free(f);
        free(c);
        wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of memory forking the CUDA backend");
        return NULL;
    }
    cudaError_t e = cudaStreamSynchronize(root->stream);
    if (e != cudaSuccess) {
        cudaGetLastError();
        wm_set_error(WM_ERR_INTERNAL, "CUDA error before forking the backend: %s", cudaGetErrorString(e));
        free(f);
        free(c);
        return NULL;
    }
    if (!impl_init(c, root)) {
        impl_free(c);
        free(f);
        return NULL;
    }
    *f = *be; /* be's table, wrappers (profile.c) included */
    f->impl = c;
    f->destroy = cu_destroy;
    return f;
}

int wm_backend_cuda_compiled(void) { return 1; }

wm_backend *wm_backend_cuda_new(void) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        cudaGetLastError();
        wm_set_error(WM_ERR_NO_DEVICE, "no CUDA device (%s)",
                     e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount found none");
        return NULL;
    }
    wm_backend *be = calloc(1, sizeof *be);
    cuda_impl *c = calloc(1, sizeof *c);
    if (!be || !c) {
        free(be);
        free(c);
        wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of memory creating the CUDA backend");
        return NULL;
    }
    pthread_mutex_init(&c->derive, NULL);
    if (!impl_init(c, NULL)) {
        impl_free(c);
        free(be);
        return NULL;
    }
    be->name = "cuda";
    be->kind = WM_BACKEND_CUDA;
    {
        struct cudaDeviceProp prop;
        memset(&prop, 0, sizeof prop);
        if (cudaGetDeviceProperties(&prop, c->device) == cudaSuccess)
            snprintf(be->device_name, sizeof be->device_name, "%.95s", prop.name);
    }
    be->impl = c;
    be->destroy = cu_destroy;
    be->fork = cu_fork;
    be->alloc = cu_alloc;
    be->free = cu_free;
    be->upload = cu_upload;
    be->download = cu_download;
    be->copy = cu_copy;
    be->fill = cu_fill;
    be->sync = cu_sync;
    be->bytes_in_use = cu_bytes;
    be->weight_new = cu_weight_new;
    be->weight_free = cu_weight_free;
    be->weight_f32 = cu_weight_f32;
    be->linear = wm_cu_linear;
    be->ffn = wm_cu_ffn;
    be->self_attn_in = wm_cu_self_attn_in;
    be->self_attn = wm_cu_self_attn;
    be->cross_attn = wm_cu_cross_attn;
    be->ffn_block = wm_cu_ffn_block;
    be->capture_begin = wm_cu_capture_begin;
    be->capture_end = wm_cu_capture_end;
    be->replay = wm_cu_replay;
    be->silu = cu_silu;
    be->gelu_tanh = cu_gelu_tanh;
    be->relu = cu_relu;
    be->axpby = cu_axpby;
    be->add = cu_add;
    be->layernorm_mod = cu_layernorm_mod;
    be->layernorm_affine = cu_layernorm_affine;
    be->rmsnorm = cu_rmsnorm;
    be->rope = cu_rope;
    be->gated_add = cu_gated_add;
    be->kv_new = cu_kv_new;
    be->kv_free = cu_kv_free;
    be->kv_write = cu_kv_write;
    be->kv_move = cu_kv_move;
    be->kv_copy = cu_kv_copy;
    be->kv_read = cu_kv_read;
    be->kv_load = cu_kv_load;
    be->attention = cu_attention;
    be->kv_set_bias = cu_kv_set_bias;
    be->kv_get_bias = cu_kv_get_bias;
    be->kv_write_match = wm_cu_kv_write_match;
    be->kv_read_match = wm_cu_kv_read_match;
    be->kv_load_match = wm_cu_kv_load_match;
    be->kv_match = wm_cu_kv_match;
    be->kv_merge = wm_cu_kv_merge;
    be->kv_compact = wm_cu_kv_compact;
    be->lsh_new = wm_cu_lsh_new;
    be->lsh_free = wm_cu_lsh_free;
    be->attention_annsa = wm_cu_attention_annsa;
    be->attention_annca = wm_cu_attention_annca;
    be->lsh_take_counts = wm_cu_lsh_take_counts;
    be->patchify = cu_patchify;
    be->unpatchify = cu_unpatchify;
    be->noise = cu_noise;
    be->timestep_sinusoid = cu_timestep_sinusoid;
    wm_cu_image_ops(be);
    be->tanh_clamp = cu_tanh_clamp;
    be->clamp = cu_clamp;
    be->to_rgb8 = cu_to_rgb8;
    be->pin_host = cu_pin_host;
    be->unpin_host = cu_unpin_host;
    return be;
}
