/* rolling.h - Rolling Forcing's sampler (config "sampler": "rolling_forcing"; docs/CONVERT.md, the
 * spec read from TencentARC/RollingForcing; tools/reference/rolling_ref.py, the same loop in PyTorch).
 *
 * A window of up to n blocks (n = the number of denoising steps, a block = num_frame_per_block latent
 * frames) at staggered noise levels is denoised in one bidirectional forward per iteration: the
 * oldest block reaches the last level and is final, the others are re-noised one level on, and a new
 * block enters from fresh noise. The final block then gets the ordinary cache pass (the "clean
 * pass"), whose K/V form the history: the session's cache with a window of span = (n + 2) blocks
 * and no sinks. The window's forward attends to [the first block's keys re-rotated to the frames just
 * before the working frames ; the working frames (the newest history frames before the window) ;
 * the window itself], built per iteration in stores of its own (`den`).
 *
 * A generate call runs iterations until one block is final (n on a fresh session, then one), so each
 * call still yields one chunk of num_frame_per_block frames. */
#ifndef WM_ROLLING_H
#define WM_ROLLING_H

#include "backend.h"

typedef struct wm_rolling {
    int on;
    int levels;    /* n: the step count, the blocks of a full window */
    int span;      /* (n + 2) * F frames: what either pass attends to */
    int in_flight; /* blocks carried between calls, oldest first at levels in_flight .. 1 */
    int cur;       /* which of x[] holds the window */
    float *x[2];   /* backend [n * F, C, H, W]: the window's latents at their levels, and the next ones */
    float *v;      /* backend [n * F, C, H, W]: the iteration's flow */
    wm_kv **den;   /* [layers] the window forward's keys and values, span frames of rows */
    wm_kv **sink;  /* [layers] the first block's K/V from its clean pass (keys rotated at frames 0..F-1) */
    int has_sink;
    int64_t *n_valid; /* [layers] rows of den before the window's own */
    float *acts;      /* host [n * F][action_dim] */
} wm_rolling;

#endif
