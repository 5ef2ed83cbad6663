/* fake_plugin.c - a "libwm.so" that speaks only wm ABI version 2, to check that hosts built for
 * version 1 refuse it with a clear message instead of calling into a table they do not understand. */
#include <stddef.h>
#include <stdint.h>

typedef struct fake_api {
    uint32_t version;
    uint32_t struct_size;
} fake_api;

static const fake_api API_V2 = {2u, sizeof(fake_api)};

__attribute__((visibility("default"))) const void *wm_get_api(uint32_t version) {
    return version == 2u ? &API_V2 : NULL;
}
