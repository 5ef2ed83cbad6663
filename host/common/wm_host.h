/* wm_host.h - small pieces every interactive host needs: the ABI check right after dlsym (with a
 * message that says which versions the plugin speaks), the default model, backend names. */
#ifndef WM_HOST_WM_HOST_H
#define WM_HOST_WM_HOST_H

#include "wm.h"

#include <stddef.h>
#include <stdint.h>

/* The API table of a plugin, given its wm_get_api (NULL when the symbol is missing). NULL on a
 * mismatch, with a message in err naming `path`, the versions the plugin answers and the one this
 * host was built for, e.g. "libwm.so speaks wm ABI version(s) 2; this host needs version 1". */
const wm_api *wm_host_get_api(wm_get_api_fn get, const char *path, char *err, size_t err_size);

/* The model to run when none is given: `<assets>/game` when it holds a config.json (the shipped
 * neural game), else `<assets>/demo/config.json` with random weights (*random_weights = 1).
 * Returns 1, or 0 when neither exists. */
int wm_host_default_model(const char *assets_dir, char *path, size_t size, int *random_weights);

/* Prompt presets: the "_prompts" array of a model's config.json (keys starting with '_' belong to
 * the hosts, docs/MODEL.md). model is a directory or a config.json path. Up to max strdup'ed
 * strings into out (the caller frees them); returns the count (0 when there are none). */
int wm_host_model_prompts(const char *model, char **out, int max);

/* "cpu", "cuda", "auto"; and the reverse (-1 for an unknown name). */
/* Path tests, and the directory of a model path (the path itself, or the folder of a config.json). */
int wm_host_is_file(const char *path);
int wm_host_is_dir(const char *path);
void wm_host_model_dir(const char *model, char *dir, size_t size);

const char *wm_host_backend_name(int backend);
int wm_host_backend_parse(const char *name);

/* Video frames produced once chunk c (0-based, since reset) is done: latent frame f yields video
 * frames u*(f-1)+1 .. u*f, latent frame 0 yields frame 0 (docs/MODEL.md section 8). */
int64_t wm_host_frames_after_chunk(const wm_model_info *info, int64_t c);

/* The action guidance a session runs with: `requested` (wm_session_params.action_guidance), or the
 * model's default when it is < 0 (docs/MODEL.md section 2). */
float wm_host_action_guidance(const wm_model_info *info, float requested);

/* 64-bit FNV-1a of a frame, the replay check. */
uint64_t wm_host_hash(const void *data, size_t n);

/* Ctrl-C (and SIGTERM) for long runs: wm_host_catch_interrupt installs a handler that only sets a
 * flag; wm_host_interrupted reads it, and wm_host_abort_on_interrupt is the same as an abort_cb of
 * the model and session params, so generation stops at the next chunk boundary. */
void wm_host_catch_interrupt(void);
int wm_host_interrupted(void);
int wm_host_abort_on_interrupt(void *user);

/* Seconds on the monotonic clock. */
double wm_host_now_s(void);

#endif
