/* quality.h - frame similarity of wm-accel-eval: PSNR on RGB and SSIM on luma, the definitions of
 * tools/eval/fidelity.py (so numbers from both tools compare). */
#ifndef WM_ACCEL_EVAL_QUALITY_H
#define WM_ACCEL_EVAL_QUALITY_H

#include <stddef.h>
#include <stdint.h>

/* PSNR of identical frames (and the cap of every value): JSON has no infinity. A single 8-bit step
 * in one channel of one pixel of a 256 x 256 frame already gives 101.1 dB, so every value at 100 is
 * "identical or as good as identical"; `identical` counts the bit-exact ones. */
#define QUALITY_PSNR_CAP 100.0

/* PSNR in dB of two RGB8 frames (rows `pitch` bytes apart), peak 255, MSE over all three channels;
 * QUALITY_PSNR_CAP when identical. *identical (may be NULL): 1 when bit-exact. */
double quality_psnr_rgb(const uint8_t *a, const uint8_t *b, int width, int height, size_t pitch,
                        int *identical);

/* Mean SSIM (Wang et al. 2004) of the luma (0.299 R + 0.587 G + 0.114 B) of two RGB8 frames: an 11x11
 * Gaussian window (sigma 1.5) over the valid positions only (no padding), C1 = (0.01 * 255)^2,
 * C2 = (0.03 * 255)^2. 1 for identical frames. Frames narrower than 11 pixels use a window of their
 * size. */
typedef struct quality_ssim quality_ssim;
quality_ssim *quality_ssim_new(int width, int height); /* work buffers; NULL when out of memory */
double quality_ssim_rgb(quality_ssim *q, const uint8_t *a, const uint8_t *b, size_t pitch);
void quality_ssim_free(quality_ssim *q);

/* Drift statistics of one RGB8 frame: sharpness = mean squared 4-neighbour Laplacian of the luma
 * (interior pixels; blur-out drives it towards 0) and the mean of each channel (colour drift). */
void quality_frame_stats(const uint8_t *rgb, int width, int height, size_t pitch, double *sharpness,
                         double mean_rgb[3]);

#endif
