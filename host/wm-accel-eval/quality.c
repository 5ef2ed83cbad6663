/* quality.c - PSNR and SSIM (quality.h). */
#include "quality.h"

#include <math.h>
#include <stdlib.h>

double quality_psnr_rgb(const uint8_t *a, const uint8_t *b, int width, int height, size_t pitch,
                        int *identical) {
    uint64_t sse = 0;
    for (int y = 0; y < height; y++) {
        const uint8_t *pa = a + (size_t)y * pitch, *pb = b + (size_t)y * pitch;
        for (int x = 0; x < 3 * width; x++) {
            const int d = (int)pa[x] - (int)pb[x];
            sse += (uint64_t)(d * d);
        }
    }
    if (identical) *identical = sse == 0;
    if (sse == 0) return QUALITY_PSNR_CAP;
    const double mse = (double)sse / (3.0 * width * height);
    const double p = 10.0 * log10(255.0 * 255.0 / mse);
    return p < QUALITY_PSNR_CAP ? p : QUALITY_PSNR_CAP;
}

#define NMAP 5 /* a, b, a*a, b*b, a*b */

struct quality_ssim {
    int w, h, k;     /* frame size, window size */
    double g[11];    /* normalised Gaussian */
    double *la, *lb; /* luma, w*h */
    double *v;       /* the five maps after the vertical pass, (h-k+1)*w each */
};

quality_ssim *quality_ssim_new(int width, int height) {
    if (width < 1 || height < 1) return NULL;
    quality_ssim *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->w = width, q->h = height;
    q->k = 11;
    if (q->k > width) q->k = width;
    if (q->k > height) q->k = height;
    double sum = 0;
    for (int i = 0; i < q->k; i++) {
        const double t = (i - q->k / 2) / 1.5;
        sum += q->g[i] = exp(-0.5 * t * t);
    }
    for (int i = 0; i < q->k; i++) q->g[i] /= sum;
    const size_t n = (size_t)width * height, nv = (size_t)(height - q->k + 1) * width;
    q->la = malloc(n * sizeof(double));
    q->lb = malloc(n * sizeof(double));
    q->v = malloc(NMAP * nv * sizeof(double));
    if (!q->la || !q->lb || !q->v) {
        quality_ssim_free(q);
        return NULL;
    }
    return q;
}

void quality_ssim_free(quality_ssim *q) {
    if (!q) return;
    free(q->la);
    free(q->lb);
    free(q->v);
    free(q);
}

static void luma(const uint8_t *rgb, size_t pitch, int w, int h, double *out) {
    for (int y = 0; y < h; y++) {
        const uint8_t *p = rgb + (size_t)y * pitch;
        for (int x = 0; x < w; x++)
            out[(size_t)y * w + x] = 0.299 * p[3 * x] + 0.587 * p[3 * x + 1] + 0.114 * p[3 * x + 2];
    }
}

double quality_ssim_rgb(quality_ssim *q, const uint8_t *a, const uint8_t *b, size_t pitch) {
    const int w = q->w, h = q->h, k = q->k, hv = h - k + 1, wv = w - k + 1;
    const size_t nv = (size_t)hv * w;
    luma(a, pitch, w, h, q->la);
    luma(b, pitch, w, h, q->lb);
    /* vertical pass of the separable Gaussian: the five statistics' maps */
    double *va = q->v, *vb = va + nv, *vaa = vb + nv, *vbb = vaa + nv, *vab = vbb + nv;
    for (int y = 0; y < hv; y++)
        for (int x = 0; x < w; x++) {
            double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
            for (int i = 0; i < k; i++) {
                const double g = q->g[i], pa = q->la[(size_t)(y + i) * w + x],
                             pb = q->lb[(size_t)(y + i) * w + x];
                sa += g * pa, sb += g * pb, saa += g * pa * pa, sbb += g * pb * pb, sab += g * pa * pb;
            }
            const size_t o = (size_t)y * w + x;
            va[o] = sa, vb[o] = sb, vaa[o] = saa, vbb[o] = sbb, vab[o] = sab;
        }
    /* horizontal pass and the SSIM map, averaged */
    const double C1 = (0.01 * 255) * (0.01 * 255), C2 = (0.03 * 255) * (0.03 * 255);
    double total = 0;
    for (int y = 0; y < hv; y++)
        for (int x = 0; x < wv; x++) {
            double ma = 0, mb = 0, eaa = 0, ebb = 0, eab = 0;
            const size_t o = (size_t)y * w + x;
            for (int i = 0; i < k; i++) {
                const double g = q->g[i];
                ma += g * va[o + i], mb += g * vb[o + i], eaa += g * vaa[o + i], ebb += g * vbb[o + i],
                    eab += g * vab[o + i];
            }
            const double saa = eaa - ma * ma, sbb = ebb - mb * mb, sab = eab - ma * mb;
            total += ((2 * ma * mb + C1) * (2 * sab + C2)) / ((ma * ma + mb * mb + C1) * (saa + sbb + C2));
        }
    return total / ((double)hv * wv);
}

void quality_frame_stats(const uint8_t *rgb, int width, int height, size_t pitch, double *sharpness,
                         double mean_rgb[3]) {
    double sum[3] = {0, 0, 0}, lap = 0;
    for (int y = 0; y < height; y++)
        for (int x = 0; x < width; x++)
            for (int ch = 0; ch < 3; ch++) sum[ch] += rgb[(size_t)y * pitch + (size_t)x * 3 + ch];
#define LUMA(yy, xx)                                                                                  \
    (0.299 * rgb[(size_t)(yy) * pitch + (size_t)(xx) * 3] + 0.587 * rgb[(size_t)(yy) * pitch + (size_t)(xx) * 3 + 1] + \
     0.114 * rgb[(size_t)(yy) * pitch + (size_t)(xx) * 3 + 2])
    long n = 0;
    for (int y = 1; y + 1 < height; y++)
        for (int x = 1; x + 1 < width; x++) {
            const double l = LUMA(y - 1, x) + LUMA(y + 1, x) + LUMA(y, x - 1) + LUMA(y, x + 1) - 4.0 * LUMA(y, x);
            lap += l * l;
            n++;
        }
#undef LUMA
    const double px = (double)width * height;
    for (int ch = 0; ch < 3; ch++) mean_rgb[ch] = px > 0 ? sum[ch] / px : 0;
    *sharpness = n > 0 ? lap / (double)n : 0;
}
