/* decoder.h - streaming TAEHV-architecture decoder: latent frames in, RGB frames out
 * (docs/MODEL.md section 7). State (MemBlock memories, frames still to trim) lives here, so the
 * output does not depend on how the latents were split into chunks. */
#ifndef WM_DECODER_H
#define WM_DECODER_H

#include "backend.h"
#include "config.h"
#include "weights.h"

typedef struct wm_decoder wm_decoder;

/* Adds the decoder's tensors (`decoder.I.*`) to a manifest. */
void wm_decoder_manifest(const wm_config *cfg, wm_weights *ws);
/* Binds weights and allocates state/scratch on the backend. */
wm_status wm_decoder_new(wm_decoder **out, const wm_config *cfg, wm_backend *be, const wm_weights *ws);
void wm_decoder_free(wm_decoder *d);
/* Back to the start of a stream (zero memories, trim the first frames again). */
void wm_decoder_reset(wm_decoder *d);
/* Decodes one latent frame lat[C_lat, h, w] (backend memory). Writes the frames it produces to
 * out[k][image_channels][h*su][w*su] (backend memory, room for time_upscale frames) and returns how
 * many (0..time_upscale; fewer at the stream start). Negative wm_status on failure. */
int wm_decoder_push(wm_decoder *d, const float *lat, float *out);
/* Decodes n latent frames lat + i*stride (i < n) in order: n calls of wm_decoder_push whose frames
 * follow each other in out (room for n * time_upscale frames), so nothing waits for the device in
 * between. Returns the frames written, or a negative wm_status. */
int wm_decoder_push_many(wm_decoder *d, const float *lat, int n, size_t stride, float *out);
/* Snapshot of the streaming state, a fixed size per decoder. */
size_t wm_decoder_state_size(const wm_decoder *d);
void wm_decoder_state_save(const wm_decoder *d, void *dst);
void wm_decoder_state_load(wm_decoder *d, const void *src);

#endif
