/* slow_long_rollout.c - 5000 latent frames of a small random-weight model (issue 7: past frame 1024),
 * dense with a rolling window of 20 frames and again with all three accelerations: every latent stays finite
 * and the output's scale stays where it was early on (the RMS of the last 100 chunks within 0.5x-2x
 * of chunks 100-200), the cache stays within its bound, and the frame counters are exact. Attention
 * past frame 1024 equals attention near 0 at the op level: test_rope_far. */
#include "harness.h"
#include "wm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FRAMES 5000

static const char *config_json =
    "{\"name\": \"long-rollout\", \"dim\": 64, \"ffn_dim\": 128, \"num_heads\": 1, \"num_layers\": 2,\n"
    " \"in_dim\": 4, \"out_dim\": 4, \"text_dim\": 16, \"text_len\": 8, \"latent_height\": 8, \"latent_width\": 8,\n"
    " \"num_frame_per_block\": 1, \"denoising_step_list\": [1000, 750, 500, 250], \"local_attn_size\": 20,\n"
    " \"sink_size\": 1}\n";

static void rollout(const wm_api *api, wm_model *m, int accel, const char *what) {
    wm_session_params sp;
    api->session_params_init(&sp);
    sp.seed = 3;
    if (accel) { /* settings that act on this small model: merges, several key blocks, a sparse prompt */
        sp.accel.tempcache = sp.accel.annsa = sp.accel.annca = 1;
        sp.accel.tc_threshold = 0.5f, sp.accel.sa_bits = 3, sp.accel.ca_bits = 4, sp.accel.ca_tables = 1;
        sp.accel.ca_min_tokens = 0; /* the 8-token prompt context: AnnCA only when asked for */
    }
    wm_session *s = NULL;
    CHECK_STATUS(api->session_new(m, &sp, &s), WM_OK);
    if (!s) return;
    float emb[8 * 16];
    for (int i = 0; i < 8 * 16; i++) emb[i] = cosf(0.61f * (float)i);
    CHECK_STATUS(api->session_set_prompt_embeddings(s, emb, 8, 16), WM_OK);
    const size_t n = 4 * 8 * 8;
    float lat[4 * 8 * 8];
    double *rms = calloc(FRAMES, sizeof(double));
    int finite = 1;
    for (int f = 0; f < FRAMES; f++) {
        if (api->session_generate(s, NULL) != WM_OK) {
            fprintf(stderr, "%s: frame %d: %s\n", what, f, api->last_error());
            wm_test_failures++;
            break;
        }
        api->session_read_latents(s, lat, n, NULL);
        double ss = 0;
        for (size_t i = 0; i < n; i++) {
            finite &= isfinite(lat[i]) != 0;
            ss += (double)lat[i] * lat[i];
        }
        rms[f] = sqrt(ss / (double)n);
    }
    wm_stats st = {.size = sizeof st};
    api->session_get_stats(s, &st);
    double early = 0, late = 0;
    for (int f = 100; f < 200; f++) early += rms[f] / 100;
    for (int f = FRAMES - 100; f < FRAMES; f++) late += rms[f] / 100;
    fprintf(stderr, "%s: %lld latent frames, RMS chunks 100-200 %.4f, last 100 %.4f, cache %lld tokens, %lld merges, "
            "density sa %.2f ca %.2f, %.1f s\n", what, (long long)st.latent_frames, early, late, (long long)st.cache_tokens,
            (long long)st.tc_merges_total, st.sa_density, st.ca_density, st.total_ms / 1000);
    CHECK(finite);
    CHECK(st.latent_frames == FRAMES);
    CHECK(late > 0.5 * early && late < 2.0 * early);
    CHECK(st.cache_tokens <= (20 - 1) * 16); /* the window less one chunk, in tokens */
    if (accel) CHECK(st.tc_merges_total > 0);
    free(rms);
    api->session_free(s);
}

int main(void) {
    const wm_api *api = wm_test_plugin_api();
    if (!api) return 1;
    char path[600];
    if (!wm_test_write_config("slow_long_rollout_model", config_json, path, sizeof path)) return 1;
    wm_model *m = wm_test_load_cpu(api, path, 1);
    if (!m) return wm_test_finish("slow_long_rollout");
    rollout(api, m, 0, "dense, window 20");
    rollout(api, m, 1, "all three accelerations");
    api->model_free(m);
    return wm_test_finish("slow_long_rollout");
}
