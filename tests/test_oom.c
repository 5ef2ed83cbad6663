/* test_oom.c - out of memory is an error, not a crash, and loses nothing: a session whose KV cache
 * cannot fit in this machine is refused with WM_ERR_OUT_OF_MEMORY, and the model keeps working. */
#include "harness.h"
#include "wm.h"

#include <string.h>

int main(void) {
    const wm_api *api = wm_test_plugin_api();
    if (!api) return 1;
    wm_model *m = wm_test_load_cpu(api, WM_SOURCE_DIR "/assets/demo/config.json", 1);
    if (!m) return wm_test_finish("test_oom");
    wm_session_params sp;
    api->session_params_init(&sp);
    sp.window_frames = -1;
    sp.max_cache_frames = 1 << 20; /* ~400 GB of K/V for this model */
    wm_session *s = (wm_session *)&sp; /* must be reset to NULL on failure */
    CHECK_STATUS(api->session_new(m, &sp, &s), WM_ERR_OUT_OF_MEMORY);
    CHECK(s == NULL);
    printf("refused: %s\n", api->last_error());
    CHECK(strstr(api->last_error(), "KV cache") != NULL);
    /* the model is intact: a normal session runs */
    sp.max_cache_frames = 30;
    CHECK_STATUS(api->session_new(m, &sp, &s), WM_OK);
    CHECK_STATUS(api->session_set_prompt_text(s, "forest"), WM_OK);
    int n = 0;
    CHECK_STATUS(api->session_generate(s, &n), WM_OK);
    CHECK(n > 0);
    api->session_free(s);
    api->model_free(m);
    return wm_test_finish("test_oom");
}
