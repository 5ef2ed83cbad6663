/* conv.c - the CPU backend's decoder ops. Its images (backend.h) are plain fp32 [C, H, W] arrays:
 * 2-D convolution (im2col + OpenBLAS sgemm) with its bias / residual / ReLU epilogue, nearest 2x
 * upsampling, concatenation and copies, tanh clamp, and conversion to interleaved RGB8. */
#include "common.h"
#include "cpu_ops.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* OpenMP only where the work pays for waking the threads (as in backend_cpu.c) */
#define CONV_PAR_MIN 65536
#define PAR(work) if ((size_t)(work) >= CONV_PAR_MIN)

/* im2col of output rows [r0, r1): col[(c*k + ky)*k + kx][(r - r0)*W + x] = x[c][r+ky-p][x+kx-p], zero
 * outside the image (PyTorch's zero padding). */
static void im2col_rows(float *col, const float *x, int Cin, int H, int W, int k, int r0, int r1) {
    const int p = k / 2, kk = k * k, nr = r1 - r0;
    const size_t ncol = (size_t)nr * W;
    #pragma omp parallel for schedule(static) PAR(ncol * Cin * kk)
    for (int row = 0; row < Cin * kk; row++) {
        const int c = row / kk, ky = (row / k) % k, kx = row % k;
        const float *xc = x + (size_t)c * H * W;
        float *dst = col + (size_t)row * ncol;
        /* columns of this tap that read inside the image: x in [x0, x1) */
        const int x0 = kx - p < 0 ? p - kx : 0;
        const int x1 = W - (kx - p > 0 ? kx - p : 0);
        for (int r = r0; r < r1; r++) {
            float *d = dst + (size_t)(r - r0) * W;
            const int sr = r + ky - p;
            if (sr < 0 || sr >= H || x1 <= x0) {
                memset(d, 0, (size_t)W * sizeof(float));
                continue;
            }
            for (int xx = 0; xx < x0; xx++) d[xx] = 0;
            memcpy(d + x0, xc + (size_t)sr * W + (x0 + kx - p), (size_t)(x1 - x0) * sizeof(float));
            for (int xx = x1; xx < W; xx++) d[xx] = 0;
        }
    }
}

/* The im2col buffer is bounded (bands of output rows) so a 480x832 image does not need a
 * Cin*9*H*W scratch (~1 GB at Cin = 64). */
#define CONV_COL_FLOATS ((size_t)4 << 20)

/* y[Cout, HW] = w[Cout, K] (*) x (+ b[Cout]) */
static void conv2d(float *y, const float *x, const float *w, const float *b, int Cin, int Cout, int H, int Wd,
                   int k) {
    const size_t HW = (size_t)H * Wd;
    const int K = Cin * k * k;
    if (b) {
        #pragma omp parallel for schedule(static) PAR(HW * Cout)
        for (int co = 0; co < Cout; co++) {
            float *yc = y + (size_t)co * HW, v = b[co];
            for (size_t i = 0; i < HW; i++) yc[i] = v;
        }
    }
    const float beta = b ? 1.0f : 0.0f;
    /* OpenBLAS runs single-threaded (backend_cpu.c); threads take column slices / row bands. */
    const int nt = omp_get_max_threads();
    const int big = (size_t)Cout * HW * K >= ((size_t)4 << 20);
    if (k == 1) { /* y[Cout, HW] = W[Cout, Cin] @ x[Cin, HW], columns split across threads */
        const int parts = big ? nt : 1;
        #pragma omp parallel for schedule(static) if (parts > 1)
        for (int p = 0; p < parts; p++) {
            size_t c0 = HW * p / parts, c1 = HW * (p + 1) / parts;
            if (c1 > c0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Cout, (int)(c1 - c0), Cin, 1.0f, w, Cin,
                            x + c0, (int)HW, beta, y + c0, (int)HW);
        }
        return;
    }
    const size_t row_floats = (size_t)K * Wd;
    int band = (int)(CONV_COL_FLOATS / row_floats);
    if (band < 1) band = 1;
    if (big && band > (H + nt - 1) / nt) band = (H + nt - 1) / nt; /* at least one band per thread */
    if (band > H) band = H;
    const int n_bands = (H + band - 1) / band;
    #pragma omp parallel if (big && n_bands > 1)
    {
        float *col = wm_malloc((size_t)band * row_floats * sizeof(float), "conv2d im2col");
        #pragma omp for schedule(dynamic)
        for (int bi = 0; bi < n_bands; bi++) {
            if (!col) { /* message set by wm_malloc; the sampler sees the failure flag */
                #pragma omp critical
                wm_note_failure(WM_ERR_OUT_OF_MEMORY);
                continue;
            }
            const int r0 = bi * band, r1 = r0 + band < H ? r0 + band : H, n = (r1 - r0) * Wd;
            im2col_rows(col, x, Cin, H, Wd, k, r0, r1);
            /* y[:, r0*W : r1*W] (row stride HW) = W[Cout, K] @ col[K, n] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Cout, n, K, 1.0f, w, K, col, n, beta,
                        y + (size_t)r0 * Wd, (int)HW);
        }
        free(col);
    }
}

void wm_cpu_img_conv(wm_backend *be, void *yv, const void *xv, const wm_weight *Wt, const wm_weight *b, int o0,
                     int Cin, int Cout, int H, int Wd, int k, const void *resv, int relu) {
    float *y = yv;
    const float *res = resv;
    const size_t n = (size_t)Cout * H * Wd;
    conv2d(y, xv, Wt->data + (size_t)o0 * Cin * k * k, b ? b->data + o0 : NULL, Cin, Cout, H, Wd, k);
    if (!res && !relu) return;
    #pragma omp parallel for schedule(static) PAR(n)
    for (size_t i = 0; i < n; i++) {
        const float v = res ? y[i] + res[i] : y[i];
        y[i] = relu && v < 0.0f ? 0.0f : v;
    }
}

size_t wm_cpu_img_bytes(wm_backend *be, int C, int H, int W) { return (size_t)C * H * W * sizeof(float); }

/* images are fp32 [C, H, W]: conversions, copies and concatenation along channels are memcpy */
void wm_cpu_img_copy(wm_backend *be, void *y, const void *x, int C, int H, int W) {
    memcpy(y, x, wm_cpu_img_bytes(be, C, H, W));
}

void wm_cpu_img_from_f32(wm_backend *be, void *img, const float *x, int C, int H, int W) {
    wm_cpu_img_copy(be, img, x, C, H, W);
}

void wm_cpu_img_to_f32(wm_backend *be, float *x, const void *img, int C, int H, int W) {
    wm_cpu_img_copy(be, x, img, C, H, W);
}

void wm_cpu_img_concat(wm_backend *be, void *y, const void *a, const void *b, int C, int H, int W) {
    const size_t half = wm_cpu_img_bytes(be, C, H, W);
    memcpy(y, a, half);
    memcpy((char *)y + half, b, half);
}

void wm_cpu_img_upsample2x(wm_backend *be, void *yv, const void *xv, int C, int H, int W) {
    float *y = yv;
    const float *x = xv;
    #pragma omp parallel for schedule(static) PAR((size_t)4 * C * H * W)
    for (int cr = 0; cr < C * H; cr++) {
        const float *src = x + (size_t)cr * W;
        float *d0 = y + (size_t)cr * 2 * (2 * (size_t)W); /* output rows 2r and 2r+1 of channel c */
        for (int j = 0; j < W; j++) d0[2 * j] = d0[2 * j + 1] = src[j];
        memcpy(d0 + 2 * (size_t)W, d0, 2 * (size_t)W * sizeof(float));
    }
}

void wm_cpu_tanh_clamp(wm_backend *be, float *x, size_t n, float limit) {
    /* x / l (not x * (1/l)) like TAEHV's Clamp: torch.tanh(x / 3) * 3 */
    #pragma omp parallel for schedule(static) PAR(n)
    for (size_t i = 0; i < n; i++) x[i] = tanhf(x[i] / limit) * limit;
}

void wm_cpu_to_rgb8(wm_backend *be, uint8_t *rgb, size_t pitch, const float *x, int n, int H, int W) {
    const size_t HW = (size_t)H * W;
    #pragma omp parallel for schedule(static) PAR(3 * HW * n)
    for (int fr = 0; fr < n * H; fr++) { /* frame fr / H, row fr % H: frames follow each other by H rows */
        const float *xf = x + (size_t)(fr / H) * 3 * HW;
        const int r = fr % H;
        uint8_t *dst = rgb + (size_t)fr * pitch;
        for (int j = 0; j < W; j++)
            for (int c = 0; c < 3; c++) {
                float v = xf[c * HW + (size_t)r * W + j];
                if (!(v > 0.0f)) v = 0.0f; /* also maps NaN to 0 */
                if (v > 1.0f) v = 1.0f;
                /* nearbyintf rounds half to even, like torch.round */
                dst[3 * j + c] = (uint8_t)nearbyintf(v * 255.0f);
            }
    }
}
