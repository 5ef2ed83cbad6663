// faiss_shim.cpp - extern "C" wrappers over FAISS (faiss_shim.h). No exception leaves this file:
// the plugin must never abort its host.
#include "faiss_shim.h"

#include <faiss/IndexLSH.h>
#include <faiss/IndexScalarQuantizer.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <vector>

struct wm_faiss_lsh {
    faiss::IndexLSH index;
    int d, nbits;
    wm_faiss_lsh(int d_, int nbits_) : index(d_, nbits_, true, false), d(d_), nbits(nbits_) {}
};

namespace {

// Runs f, turning any exception into a return code and a message.
template <class F> int guarded(const char *what, char *err, size_t errlen, F &&f) {
    try {
        f();
        return WM_FAISS_OK;
    } catch (const std::bad_alloc &) {
        if (err && errlen) std::snprintf(err, errlen, "%s: out of memory", what);
        return WM_FAISS_NO_MEMORY;
    } catch (const std::exception &e) {
        if (err && errlen) std::snprintf(err, errlen, "%s: %s", what, e.what());
        return WM_FAISS_ERROR;
    } catch (...) {
        if (err && errlen) std::snprintf(err, errlen, "%s: unknown C++ exception", what);
        return WM_FAISS_ERROR;
    }
}

// Rows [i0, i0+n) of x with stride ldx as one contiguous [n, d] block (x itself when already so).
const float *contiguous(const float *x, int64_t ldx, int d, int64_t n, std::vector<float> &buf) {
    if (ldx == d) return x;
    buf.resize((size_t)n * (size_t)d);
    for (int64_t i = 0; i < n; i++)
        std::memcpy(buf.data() + (size_t)i * d, x + i * ldx, (size_t)d * sizeof(float));
    return buf.data();
}

const int64_t ROWS_PER_PASS = 16384; // bounds the gather buffer for strided inputs

} // namespace

extern "C" int wm_faiss_lsh_new(int d, int nbits, const float *proj, wm_faiss_lsh **out, char *err,
                                size_t errlen) {
    *out = nullptr;
    if (d <= 0 || nbits <= 0) {
        if (err && errlen) std::snprintf(err, errlen, "faiss IndexLSH: bad shape d=%d nbits=%d", d, nbits);
        return WM_FAISS_ERROR;
    }
    wm_faiss_lsh *lsh = nullptr;
    int rc = guarded("faiss IndexLSH", err, errlen, [&] {
        lsh = new wm_faiss_lsh(d, nbits);
        // rrot is a LinearTransform x -> A x with A [d_out = nbits, d_in = d] row-major (apply_noalloc
        // is one sgemm with A transposed); our projection replaces the random rotation.
        faiss::RandomRotationMatrix &rr = lsh->index.rrot;
        rr.A.assign(proj, proj + (size_t)nbits * (size_t)d);
        rr.b.clear();
        rr.have_bias = false;
        rr.is_orthonormal = false; // only sa_decode would care
        rr.is_trained = true;
        lsh->index.thresholds.clear();
        lsh->index.train_thresholds = false;
        lsh->index.is_trained = true;
    });
    if (rc != WM_FAISS_OK) {
        delete lsh;
        return rc;
    }
    *out = lsh;
    return WM_FAISS_OK;
}

extern "C" void wm_faiss_lsh_free(wm_faiss_lsh *lsh) { delete lsh; }

extern "C" int wm_faiss_lsh_codes(const wm_faiss_lsh *lsh, int64_t n, const float *x, int64_t ldx,
                                  uint8_t *codes, char *err, size_t errlen) {
    return guarded("faiss IndexLSH::sa_encode", err, errlen, [&] {
        const size_t code_size = (size_t)(lsh->nbits + 7) / 8;
        std::vector<float> buf;
        for (int64_t i0 = 0; i0 < n; i0 += ROWS_PER_PASS) {
            const int64_t m = std::min(ROWS_PER_PASS, n - i0);
            const float *xc = contiguous(x + i0 * ldx, ldx, lsh->d, m, buf);
            // sa_encode: apply_preprocess (rrot: x A^T) then fvecs2bitvecs (bit set when >= 0)
            lsh->index.sa_encode(m, xc, codes + (size_t)i0 * code_size);
        }
    });
}

extern "C" int wm_faiss_sq8_search(int d, int64_t nb, const float *xb, int64_t ldb, int64_t nq,
                                   const float *xq, int64_t ldq, int k, int64_t *labels, char *err,
                                   size_t errlen) {
    if (d <= 0 || nb <= 0 || k <= 0) {
        if (err && errlen)
            std::snprintf(err, errlen, "faiss SQ8 search: bad shape d=%d nb=%lld k=%d", d, (long long)nb, k);
        return WM_FAISS_ERROR;
    }
    return guarded("faiss IndexScalarQuantizer (QT_8bit, inner product)", err, errlen, [&] {
        faiss::IndexScalarQuantizer index(d, faiss::ScalarQuantizer::QT_8bit, faiss::METRIC_INNER_PRODUCT);
        std::vector<float> buf;
        const float *b = contiguous(xb, ldb, d, nb, buf);
        index.train(nb, b);
        index.add(nb, b);
        std::vector<float> dist, qbuf;
        for (int64_t i0 = 0; i0 < nq; i0 += ROWS_PER_PASS) {
            const int64_t m = std::min(ROWS_PER_PASS, nq - i0);
            const float *q = contiguous(xq + i0 * ldq, ldq, d, m, qbuf);
            dist.resize((size_t)m * (size_t)k);
            index.search(m, q, k, dist.data(), labels + i0 * k);
        }
    });
}
