/* embed.c - the smallest host: dlopen the plugin, load a model, stream frames while holding a button.
 * The same code is in README.md ("Use the C API in 20 lines").
 *   build/host/examples/embed assets/demo/config.json build/plugin/libwm.so */
#include "wm.h"
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    void *so = dlopen(argc > 2 ? argv[2] : "libwm.so", RTLD_NOW);
    wm_get_api_fn get = so ? (wm_get_api_fn)dlsym(so, WM_GET_API_SYMBOL) : NULL;
    const wm_api *api = get ? get(WM_API_VERSION) : NULL; /* NULL: no plugin of this ABI version */
    if (!api) return fprintf(stderr, "no wm plugin of API version %u\n", WM_API_VERSION), 1;

    wm_model_params mp;
    api->model_params_init(&mp);
    mp.path = argc > 1 ? argv[1] : "assets/demo/config.json";
    mp.random_weights = 1; /* the demo config ships no weights */
    wm_session_params sp;
    api->session_params_init(&sp);
    wm_model *model = NULL;
    wm_session *s = NULL;
    wm_model_info info = {.size = sizeof info};
    if (api->model_load(&mp, &model) || api->model_get_info(model, &info) ||
        api->session_new(model, &sp, &s) ||
        api->session_set_prompt_text(s, "a walk through the forest")) /* a text-prompt model */
        return fprintf(stderr, "wm: %s\n", api->last_error()), 1;

    size_t pitch = (size_t)info.width * 3;
    unsigned char *rgb = malloc(pitch * info.height);
    wm_action hold = {.buttons = 1u << 0}; /* button 0 held: the action of the next frame not yet generated */
    for (int i = 0; i < 16; i++) {
        int64_t index;
        if (api->session_push_action(s, &hold) ||
            api->session_read_frame(s, rgb, pitch, pitch * info.height, &index))
            return fprintf(stderr, "wm: %s\n", api->last_error()), 1;
        printf("frame %lld: %dx%d, first pixel %d %d %d\n", (long long)index, info.width, info.height, rgb[0],
               rgb[1], rgb[2]);
    }
    free(rgb);
    api->session_free(s);
    api->model_free(model);
    dlclose(so);
    return 0;
}
