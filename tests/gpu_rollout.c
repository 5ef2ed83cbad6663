/* gpu_rollout.c - a multi-chunk rollout on the CUDA backend against the CPU backend, same seed,
 * prompt and actions, through the plugin ABI: every decoded frame must reach PSNR >= 40 dB.
 * Exits 77 (skipped) without a CUDA device. */
#include "harness.h"
#include "wm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define N_FRAMES 33 /* 3 chunks of the demo config (9 + 12 + 12 frames) */

static const wm_api *api;

static int rollout(int backend, uint8_t **frames_out, wm_model_info *info_out) {
    wm_model_params mp;
    api->model_params_init(&mp);
    mp.path = WM_SOURCE_DIR "/assets/demo/config.json";
    mp.random_weights = 1;
    mp.weight_seed = 5;
    mp.backend = backend;
    wm_model *m = NULL;
    wm_status st = api->model_load(&mp, &m);
    if (st == WM_ERR_NO_DEVICE) return 77;
    if (st != WM_OK) { fprintf(stderr, "model_load: %s\n", api->last_error()); return 1; }
    wm_model_info info = {.size = sizeof info};
    api->model_get_info(m, &info);
    wm_session_params sp;
    api->session_params_init(&sp);
    sp.seed = 99;
    wm_session *s = NULL;
    CHECK_STATUS(api->session_new(m, &sp, &s), WM_OK);
    CHECK_STATUS(api->session_set_prompt_text(s, "a walk through the forest at night"), WM_OK);
    size_t fb = (size_t)info.width * info.height * 3;
    uint8_t *frames = malloc(fb * N_FRAMES);
    for (int i = 0; i < N_FRAMES; i++) {
        wm_action a;
        memset(&a, 0, sizeof a);
        a.buttons = 1u << ((i / 5) % info.n_buttons);
        CHECK_STATUS(api->session_push_action(s, &a), WM_OK);
        CHECK_STATUS(api->session_read_frame(s, frames + i * fb, (size_t)info.width * 3, fb, NULL), WM_OK);
    }
    api->session_free(s);
    api->model_free(m);
    *frames_out = frames;
    *info_out = info;
    return 0;
}

int main(void) {
    api = wm_test_plugin_api();
    if (!api) return 1;
    uint8_t *gpu = NULL, *cpu = NULL;
    wm_model_info info;
    int r = rollout(WM_BACKEND_CUDA, &gpu, &info);
    if (r == 77) { printf("SKIP: no CUDA device (%s)\n", api->last_error()); return 77; }
    if (r) return 1;
    if (rollout(WM_BACKEND_CPU, &cpu, &info)) return 1;
    size_t fb = (size_t)info.width * info.height * 3;
    double worst = INFINITY;
    for (int i = 0; i < N_FRAMES; i++) {
        double se = 0;
        for (size_t p = 0; p < fb; p++) {
            double d = (double)gpu[i * fb + p] - (double)cpu[i * fb + p];
            se += d * d;
        }
        double mse = se / (double)fb, psnr = mse > 0 ? 10 * log10(255.0 * 255.0 / mse) : 99.0;
        if (psnr < worst) worst = psnr;
        printf("frame %2d: PSNR %.2f dB\n", i, psnr);
        CHECK(psnr >= 40.0);
    }
    printf("worst frame PSNR GPU vs CPU: %.2f dB (>= 40 required)\n", worst);
    free(gpu);
    free(cpu);
    return wm_test_finish("gpu_rollout");
}
