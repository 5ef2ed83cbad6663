/* fuzz_config.c - libFuzzer target for config.json parsing: any text must either be rejected with
 * a message or give a config that satisfies the invariants the engine relies on. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

const char *wm_get_error(void);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    wm_config c;
    wm_status st = wm_config_parse(&c, (const char *)data, size, "fuzz");
    if (st != WM_OK) {
        if (!wm_get_error()[0]) abort();
    } else {
        if (c.dim <= 0 || c.num_heads <= 0 || c.dim % c.num_heads) abort();
        int hd = wm_config_head_dim(&c);
        if (hd < 6 || hd % 2) abort();
        if (c.in_dim != c.out_dim || c.patch_size[0] != 1) abort();
        if (c.latent_height % c.patch_size[1] || c.latent_width % c.patch_size[2]) abort();
        if (c.n_steps < 1 || c.n_steps > WM_MAX_STEPS) abort();
        for (int i = 0; i < c.n_steps; i++) {
            float t = c.denoising_step_list[i];
            if (!(t > 0 && t <= 1000) || (i && !(t < c.denoising_step_list[i - 1]))) abort();
        }
        if (c.local_attn_size != -1 && c.local_attn_size < c.sink_size + c.num_frame_per_block) abort();
        if (c.max_cache_frames < c.num_frame_per_block) abort();
        if (c.n_buttons > WM_MAX_BUTTONS || c.n_axes > WM_MAX_AXES) abort();
        if (strlen(c.name) >= WM_MAX_NAME) abort();
        if (c.has_text_encoder) {
            if (c.vocab_size < 2 || c.max_tokens < 1 || c.max_tokens > c.text_len) abort();
            for (int i = 0; i < c.vocab_size; i++)
                if (!c.vocab[i]) abort();
        }
        if (c.decoder.present && c.decoder.image_channels != 3) abort();
    }
    wm_config_free(&c);
    return 0;
}
