/* test_prefill.c - context prefill is the cache pass a generated chunk gets: a session that prefills
 * chunks 0..1 with the latents another session generated, then generates chunk 2, produces exactly
 * (bit for bit) that session's chunk 2 latents and frames. Bad calls are refused. */
#include "harness.h"
#include "wm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const wm_api *api;

static wm_session *open_session(wm_model *m) {
    wm_session_params sp;
    api->session_params_init(&sp);
    sp.seed = 11;
    wm_session *s = NULL;
    CHECK_STATUS(api->session_new(m, &sp, &s), WM_OK);
    CHECK_STATUS(api->session_set_prompt_text(s, "forest at night"), WM_OK);
    return s;
}

int main(void) {
    api = wm_test_plugin_api();
    if (!api) return 1;
    wm_model *m = wm_test_load_cpu(api, WM_SOURCE_DIR "/assets/demo/config.json", 1);
    if (!m) return wm_test_finish("test_prefill");
    wm_model_info info = {.size = sizeof info};
    api->model_get_info(m, &info);
    const int F = info.latent_frames_per_chunk;
    const size_t chunk = (size_t)F * info.latent_channels * info.latent_height * info.latent_width;
    const size_t fb = (size_t)info.width * info.height * 3;

    /* A: three generated chunks; keep the latents of each and the frames of the last */
    wm_session *a = open_session(m);
    float *lat = malloc(3 * chunk * sizeof(float));
    uint8_t *frames_a = malloc(fb * 64), *frames_b = malloc(fb * 64);
    int n_a = 0, n_b = 0, nf = 0;
    for (int k = 0; k < 3; k++) {
        CHECK_STATUS(api->session_generate(a, &nf), WM_OK);
        CHECK_STATUS(api->session_read_latents(a, lat + k * chunk, chunk, NULL), WM_OK);
        for (int i = 0; i < nf; i++) api->session_read_frame(a, frames_a + (size_t)(k == 2 ? n_a++ : 0) * fb, info.width * 3, fb, NULL);
    }

    /* B: prefill chunks 0..1 with A's latents, then generate chunk 2 */
    wm_session *b = open_session(m);
    int nv = 0;
    CHECK_STATUS(api->session_prefill_latents(b, lat, 2 * F, &nv), WM_OK);
    CHECK(nv == 1 + (2 * F - 1) * info.time_upscale);
    uint8_t *skip = malloc(fb);
    for (int i = 0; i < nv; i++) api->session_read_frame(b, skip, info.width * 3, fb, NULL);
    CHECK_STATUS(api->session_generate(b, &nf), WM_OK);
    float *lat_b = malloc(chunk * sizeof(float));
    CHECK_STATUS(api->session_read_latents(b, lat_b, chunk, NULL), WM_OK);
    for (int i = 0; i < nf; i++) api->session_read_frame(b, frames_b + (size_t)n_b++ * fb, info.width * 3, fb, NULL);
    wm_test_compare("chunk 2 after prefill", lat_b, lat + 2 * chunk, chunk, 0.0f, 0.0f);
    CHECK(n_a == n_b && memcmp(frames_a, frames_b, (size_t)n_a * fb) == 0);
    printf("chunk 2 frames after prefill: %d, %s\n", n_b, memcmp(frames_a, frames_b, (size_t)n_a * fb) ? "DIFFER" : "identical");

    /* refused: not a whole chunk, non-finite values */
    CHECK_STATUS(api->session_prefill_latents(b, lat, F + 1, NULL), WM_ERR_INVALID_ARGUMENT);
    lat[5] = NAN;
    CHECK_STATUS(api->session_prefill_latents(b, lat, F, NULL), WM_ERR_INVALID_ARGUMENT);

    api->session_free(a);
    api->session_free(b);
    api->model_free(m);
    free(lat), free(lat_b), free(frames_a), free(frames_b), free(skip);
    return wm_test_finish("test_prefill");
}
