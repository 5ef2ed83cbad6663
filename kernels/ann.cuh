/* ann.cuh - kernels of TempCache, AnnSA and AnnCA (docs/ACCEL.md), C-callable. The CUDA backend
 * (plugin/src/cuda/accel_cuda.c) strings them together with cuBLAS and wm_flash_attn.
 *
 * Conventions: bf16 passed as its uint16_t bits; "vectors" are the head vectors of a row-major
 * [rows, H*D] array, vector v = row*H + h at element v*D; bucket codes are uint8, code
 * [v*tables + t]. Per-head permutations are int arrays perm[h*n + p] = the original row at
 * position p of head h's order. All launches are asynchronous on `stream`, allocate nothing and
 * never synchronise; each returns cudaGetLastError() (cudaErrorInvalidValue for a shape it does
 * not take). */
#ifndef WM_ANN_CUH
#define WM_ANN_CUH

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- TempCache ---- */

/* dst[r, :] = bf16(x[r, :] / |x[r, :]|) for r < n (a zero row stays zero); x fp32 [n, dim]. */
cudaError_t wm_cuda_match_normalize(uint16_t *dst, const float *x, int64_t n, int dim, cudaStream_t stream);
/* Running argmax over one tile of scores S[rows, cols] (fp32, row stride ldS): for each row i, the
 * largest S[i, j] (ties: the smallest j) is compared with (bestv[i], besti[i]) and kept when larger
 * (first != 0: always kept); besti holds col0 + j. Tiles must come in ascending col0 order. */
cudaError_t wm_cuda_match_argmax(const float *S, int64_t ldS, int rows, int cols, int col0, float *bestv,
                                 int64_t *besti, int first, cudaStream_t stream);
/* sim[i] = fp32 dot product of match rows q0 + i and besti[i] (bf16 [*, dim]), i < n. */
cudaError_t wm_cuda_match_sim(float *sim, const uint16_t *match, int dim, int64_t q0, const int64_t *besti,
                              int64_t n, cudaStream_t stream);
/* v[dst[i]] = bf16(a[i] * v[dst[i]] + b[i] * v[src[i]]) over rows of dim, i < n (no row both a dst
 * and a src, no repeated dst). */
cudaError_t wm_cuda_kv_merge(uint16_t *v, int dim, const int64_t *dst, const int64_t *src, const float *a,
                             const float *b, int64_t n, cudaStream_t stream);
/* dst[i, :] = src[idx[i], :] for i < n; rows of `row_bytes` bytes (a multiple of 4). dst and src
 * must not overlap. */
cudaError_t wm_cuda_gather_rows(void *dst, const void *src, const int64_t *idx, int64_t n, size_t row_bytes,
                                cudaStream_t stream);

/* ---- sign-LSH ---- */

/* Widest projection the hash kernel takes (tables * bits). */
#define WM_ANN_MAX_PROJ 32
/* codes[v*tables + t] = sum_b [proj_t,b . x_v >= 0] << b for the nvec head vectors of D elements
 * at x (bf16 when x_is_f32 == 0; fp32 otherwise, rounded to bf16 first, as the attention kernel
 * sees it). proj: fp32 [D][npad] on the device, npad in {8, 16, 32} >= tables*bits, column
 * t*bits + b; fp32 products of the bf16 values, accumulated in fp32 in order of d. */
cudaError_t wm_cuda_lsh_hash(uint8_t *codes, const void *x, int x_is_f32, int64_t nvec, int D,
                             const float *proj, int npad, int bits, int tables, cudaStream_t stream);

/* ---- AnnSA ---- */

/* One set of rows to order per head by (table-0 code, row) with a stable counting sort: n rows of
 * H heads, codes as above; cnt: scratch of H*256*ceil(n/1024) ints; perm: out, H*n ints. */
typedef struct wm_ann_sort_set {
    const uint8_t *codes;
    int n, tables;
    int *cnt, *perm;
} wm_ann_sort_set;
/* sorts up to two sets in three launches */
cudaError_t wm_cuda_ann_sort(const wm_ann_sort_set *sets, int nsets, int H, cudaStream_t stream);

/* Per-block bucket bitsets of an ordered set: bits[((h*nblocks + blk)*tables + t)*8 + w], bit c of
 * the 256-bit set of table t holds when some row at positions [blk*128, blk*128+128) ∩ [0, n) of
 * head h's order (perm) has code c in table t. Up to two sets at once. */
typedef struct wm_ann_bits_set {
    const int *perm;
    const uint8_t *codes;
    int n, nblocks, tables;
    uint32_t *bits;
} wm_ann_bits_set;
cudaError_t wm_cuda_ann_block_bits(const wm_ann_bits_set *sets, int nsets, int H, cudaStream_t stream);

/* The block-sparse list for wm_flash_attn: query block qb of head h attends key block kb (of nkb)
 * when kb >= nkb_full (the block holds a chunk row) or some table's bitsets of qb and kb intersect.
 * cnt: scratch H*nqb ints; kb_off: H*nqb + 1 ints; kb_idx: H*nqb*nkb ints. counters[0] += the
 * pairs listed, counters[1] += H*nqb*nkb (device, accumulated). */
cudaError_t wm_cuda_ann_csr(int *kb_off, int *kb_idx, int *cnt, const uint32_t *qbits, const uint32_t *kbits,
                            int H, int nqb, int nkb, int nkb_full, int tables,
                            unsigned long long *counters, cudaStream_t stream);

/* qp[p, h*D + d] = bf16(q[permq[h*Mq + p], h*D + d]) (q fp32 [Mq, H*D]) */
cudaError_t wm_cuda_ann_gather_q(uint16_t *qp, const float *q, const int *permq, int Mq, int H, int D,
                                 cudaStream_t stream);
/* Key/value view [Mk, H*D] bf16: row p of head h is row permk[h*n_cache + p] of k/v for p <
 * n_cache, row p otherwise. bias (nullable, [Mk] per row) is permuted likewise into bp [H][Mk]. */
cudaError_t wm_cuda_ann_gather_kv(uint16_t *kp, uint16_t *vp, float *bp, const uint16_t *k, const uint16_t *v,
                                  const float *bias, const int *permk, int n_cache, int Mk, int H, int D,
                                  cudaStream_t stream);
/* out[permq[h*Mq + p], h*D + d] = op[p, h*D + d] (fp32 [Mq, H*D] both) */
cudaError_t wm_cuda_ann_scatter_out(float *out, const float *op, const int *permq, int Mq, int H, int D,
                                    cudaStream_t stream);

/* ---- AnnCA ---- */

/* Per (group g, head h): the keys i < n_rows of k/v ([*, H*D] bf16, codes kcode) whose code in some
 * table is a code of some query row of the group (rows [g*group, min(Mq, g*group+group)), codes
 * qcode) are gathered in row order into rows g*np + [0, cnt) of kg/vg ([F*np, H*D] bf16, column
 * slice h), zeros after; bg[h*F*np + g*np + i] = bias[row] (0 without bias) for i < cnt, -inf
 * after. cnt[g*H + h] = the count. sel: scratch F*H*n_rows ints. counters[2] += the counts,
 * counters[3] += F*H*n_rows. */
cudaError_t wm_cuda_annca_select(uint16_t *kg, uint16_t *vg, float *bg, int *cnt, int *sel, const uint16_t *k,
                                 const uint16_t *v, const float *bias, const uint8_t *qcode,
                                 const uint8_t *kcode, int Mq, int group, int F, int n_rows, int np, int H,
                                 int D, int tables, unsigned long long *counters, cudaStream_t stream);
/* qg[g*gp + i, :] = bf16(q[g*group + i, :]) for i < group (and the row < Mq), zero rows after;
 * q fp32 [Mq, hd], qg bf16 [F*gp, hd]. */
cudaError_t wm_cuda_annca_pad_q(uint16_t *qg, const float *q, int Mq, int group, int gp, int F, int hd,
                                cudaStream_t stream);
/* The list: query block qb (of F*gp/128; group g = qb / (gp/128)) of head h attends key blocks
 * g*(np/128) + [0, ceil(cnt[g*H + h] / 128)). */
cudaError_t wm_cuda_annca_csr(int *kb_off, int *kb_idx, const int *cnt, int F, int H, int gp, int np,
                              cudaStream_t stream);
/* out[g*group + i, :] = og[g*gp + i, :] for the rows of each group (fp32, hd wide). */
cudaError_t wm_cuda_annca_unpad_out(float *out, const float *og, int Mq, int group, int gp, int hd,
                                    cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
