/* faiss_shim.h - the plugin's only C++: a small C interface over the parts of FAISS the CPU backend
 * uses (IndexLSH for AnnSA/AnnCA's sign buckets, IndexScalarQuantizer for TempCache's correspondence
 * search). Every C++ exception is caught inside: functions return 0 on success, otherwise a nonzero
 * code with a message in err[errlen]; the C caller records it with wm_set_error. */
#ifndef WM_FAISS_SHIM_H
#define WM_FAISS_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { WM_FAISS_OK = 0, WM_FAISS_ERROR = 1, WM_FAISS_NO_MEMORY = 2 };

/* A faiss::IndexLSH(d, nbits, rotate_data = true, train_thresholds = false) whose rotation matrix is
 * replaced by proj [nbits, d] (row-major, copied), so bit j of a vector x is [proj[j] . x >= 0]. */
typedef struct wm_faiss_lsh wm_faiss_lsh;
int wm_faiss_lsh_new(int d, int nbits, const float *proj, wm_faiss_lsh **out, char *err, size_t errlen);
void wm_faiss_lsh_free(wm_faiss_lsh *lsh);
/* codes [n, (nbits+7)/8] of the n vectors x + i*ldx (d floats each), FAISS's packing: bit j of a
 * code is bit j%8 of byte j/8. Thread-safe on one lsh. */
int wm_faiss_lsh_codes(const wm_faiss_lsh *lsh, int64_t n, const float *x, int64_t ldx, uint8_t *codes,
                       char *err, size_t errlen);
/* Approximate maximum inner product search: an IndexScalarQuantizer(d, QT_8bit, METRIC_INNER_PRODUCT)
 * trained on and filled with the nb rows xb + j*ldb, searched with the nq queries xq + i*ldq (fp32)
 * for the k best; labels [nq, k] in 0..nb-1, best first, -1 where fewer than k exist. */
int wm_faiss_sq8_search(int d, int64_t nb, const float *xb, int64_t ldb, int64_t nq, const float *xq,
                        int64_t ldq, int k, int64_t *labels, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
