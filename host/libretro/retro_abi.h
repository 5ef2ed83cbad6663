/* retro_abi.h - the part of the libretro API (version 1) that the wm core uses, declared from the
 * public libretro.h specification (libretro-common/include/libretro.h); Debian packages no libretro
 * header, and these names, values and layouts are the ABI every frontend speaks. Only what the core
 * and its test harness need is here. */
#ifndef WM_RETRO_ABI_H
#define WM_RETRO_ABI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RETRO_API_VERSION 1

/* devices */
#define RETRO_DEVICE_NONE   0
#define RETRO_DEVICE_JOYPAD 1
#define RETRO_DEVICE_MOUSE  2
#define RETRO_DEVICE_ANALOG 5

/* RetroPad buttons (SNES layout: B south, A east, Y west, X north) */
#define RETRO_DEVICE_ID_JOYPAD_B      0
#define RETRO_DEVICE_ID_JOYPAD_Y      1
#define RETRO_DEVICE_ID_JOYPAD_SELECT 2
#define RETRO_DEVICE_ID_JOYPAD_START  3
#define RETRO_DEVICE_ID_JOYPAD_UP     4
#define RETRO_DEVICE_ID_JOYPAD_DOWN   5
#define RETRO_DEVICE_ID_JOYPAD_LEFT   6
#define RETRO_DEVICE_ID_JOYPAD_RIGHT  7
#define RETRO_DEVICE_ID_JOYPAD_A      8
#define RETRO_DEVICE_ID_JOYPAD_X      9
#define RETRO_DEVICE_ID_JOYPAD_L      10
#define RETRO_DEVICE_ID_JOYPAD_R      11
#define RETRO_DEVICE_ID_JOYPAD_L2     12
#define RETRO_DEVICE_ID_JOYPAD_R2     13
#define RETRO_DEVICE_ID_JOYPAD_L3     14
#define RETRO_DEVICE_ID_JOYPAD_R3     15

/* analog sticks: [-0x8000, 0x7fff], y positive down; analog buttons [0, 0x7fff] */
#define RETRO_DEVICE_INDEX_ANALOG_LEFT   0
#define RETRO_DEVICE_INDEX_ANALOG_RIGHT  1
#define RETRO_DEVICE_INDEX_ANALOG_BUTTON 2
#define RETRO_DEVICE_ID_ANALOG_X         0
#define RETRO_DEVICE_ID_ANALOG_Y         1

/* mouse: x/y are motion since the last poll */
#define RETRO_DEVICE_ID_MOUSE_X      0
#define RETRO_DEVICE_ID_MOUSE_Y      1
#define RETRO_DEVICE_ID_MOUSE_LEFT   2
#define RETRO_DEVICE_ID_MOUSE_RIGHT  3
#define RETRO_DEVICE_ID_MOUSE_MIDDLE 6

#define RETRO_REGION_NTSC 0

/* environment commands */
#define RETRO_ENVIRONMENT_SET_MESSAGE           6  /* const struct retro_message * */
#define RETRO_ENVIRONMENT_GET_SYSTEM_DIRECTORY  9  /* const char ** */
#define RETRO_ENVIRONMENT_SET_PIXEL_FORMAT      10 /* const enum retro_pixel_format * */
#define RETRO_ENVIRONMENT_SET_INPUT_DESCRIPTORS 11 /* const struct retro_input_descriptor * */
#define RETRO_ENVIRONMENT_GET_VARIABLE          15 /* struct retro_variable * */
#define RETRO_ENVIRONMENT_SET_VARIABLES         16 /* const struct retro_variable *, ended by {NULL, NULL} */
#define RETRO_ENVIRONMENT_GET_VARIABLE_UPDATE   17 /* bool *: an option changed since the last GET_VARIABLE */
#define RETRO_ENVIRONMENT_SET_SUPPORT_NO_GAME   18 /* const bool * */
#define RETRO_ENVIRONMENT_GET_LIBRETRO_PATH     19 /* const char ** */
#define RETRO_ENVIRONMENT_GET_LOG_INTERFACE     27 /* struct retro_log_callback * */

enum retro_pixel_format {
    RETRO_PIXEL_FORMAT_0RGB1555 = 0,
    RETRO_PIXEL_FORMAT_XRGB8888 = 1, /* uint32_t pixels, native endian, top byte ignored */
    RETRO_PIXEL_FORMAT_RGB565 = 2,
    RETRO_PIXEL_FORMAT_UNKNOWN = INT32_MAX
};

enum retro_log_level {
    RETRO_LOG_DEBUG = 0,
    RETRO_LOG_INFO,
    RETRO_LOG_WARN,
    RETRO_LOG_ERROR,
    RETRO_LOG_DUMMY = INT32_MAX
};
typedef void (*retro_log_printf_t)(enum retro_log_level level, const char *fmt, ...);
struct retro_log_callback {
    retro_log_printf_t log;
};

/* Core options. SET_VARIABLES: value = "Description; default|other|...", the first value the default.
 * GET_VARIABLE: the core sets key, the frontend sets value (NULL when the key is unknown). */
struct retro_variable {
    const char *key;
    const char *value;
};

/* An on-screen notice, shown for `frames` frames. */
struct retro_message {
    const char *msg;
    unsigned frames;
};

/* An array ended by an entry whose description is NULL. */
struct retro_input_descriptor {
    unsigned port;
    unsigned device;
    unsigned index;
    unsigned id;
    const char *description;
};

struct retro_system_info {
    const char *library_name;
    const char *library_version;
    const char *valid_extensions; /* "json|..." */
    bool need_fullpath;           /* the core reads the path itself (game data not loaded by the frontend) */
    bool block_extract;
};

struct retro_game_geometry {
    unsigned base_width;
    unsigned base_height;
    unsigned max_width;
    unsigned max_height;
    float aspect_ratio; /* <= 0: base_width / base_height */
};

struct retro_system_timing {
    double fps;
    double sample_rate;
};

struct retro_system_av_info {
    struct retro_game_geometry geometry;
    struct retro_system_timing timing;
};

struct retro_game_info {
    const char *path;
    const void *data;
    size_t size;
    const char *meta;
};

typedef bool (*retro_environment_t)(unsigned cmd, void *data);
typedef void (*retro_video_refresh_t)(const void *data, unsigned width, unsigned height, size_t pitch);
typedef void (*retro_audio_sample_t)(int16_t left, int16_t right);
typedef size_t (*retro_audio_sample_batch_t)(const int16_t *data, size_t frames);
typedef void (*retro_input_poll_t)(void);
typedef int16_t (*retro_input_state_t)(unsigned port, unsigned device, unsigned index, unsigned id);

#endif
