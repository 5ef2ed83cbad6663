/* input_map.h - text files that map keys, gamepad buttons/axes and the mouse to a model's named
 * actions, and the input state that turns device events into one wm_action per video frame.
 * Shared by wm-play (SDL2) and the libretro core; no SDL here (key names go through a resolver).
 *
 * Format (docs/PLAYER.md has the full table), one binding per line, '#' starts a comment:
 *
 *   key W            = button up          # held key -> button bit
 *   key Left         = axis steer -1      # held key -> axis value (summed, clamped to [-1, 1])
 *   key "Left Shift" = button run         # names with spaces: quotes, or Left_Shift
 *   key J            = mouse x -4         # held key -> mouse delta per frame
 *   pad a            = button jump        # SDL_GameController names: a b x y back guide start
 *                                         # leftstick rightstick leftshoulder rightshoulder dpup..dpright
 *   pad leftx        = axis steer         # analog axis x scale (default 1; -1 inverts)
 *   pad righttrigger = button fire        # analog -> button when past 0.5
 *   pad rightx       = mouse x 8          # stick -> mouse delta per frame
 *   mouse            = mouse 0.5 [0.5]    # relative mouse motion x sensitivity (x [y])
 *   mouse left       = button fire        # mouse buttons: left middle right
 *   deadzone 0.15                         # pad axes below this magnitude read 0
 *
 * Every action name must be one of the model's (wm_model_info): an unknown name is an error naming
 * file:line and listing the model's names. In lenient mode (a generic map shared by many models)
 * bindings to names the model lacks are skipped and counted instead. */
#ifndef WM_HOST_INPUT_MAP_H
#define WM_HOST_INPUT_MAP_H

#include "wm.h"

#include <stddef.h>

typedef enum input_source {
    INPUT_SOURCE_KEY = 0,          /* code: resolver's key code (wm-play: SDL scancode) */
    INPUT_SOURCE_PAD_BUTTON = 1,   /* code: input_pad_button */
    INPUT_SOURCE_PAD_AXIS = 2,     /* code: input_pad_axis */
    INPUT_SOURCE_MOUSE_MOTION = 3, /* code: 0 */
    INPUT_SOURCE_MOUSE_BUTTON = 4  /* code: 1 left, 2 middle, 3 right (SDL_BUTTON_*) */
} input_source;

/* Same order and values as SDL_GameControllerButton / SDL_GameControllerAxis. */
typedef enum input_pad_button {
    INPUT_PAD_A = 0,
    INPUT_PAD_B,
    INPUT_PAD_X,
    INPUT_PAD_Y,
    INPUT_PAD_BACK,
    INPUT_PAD_GUIDE,
    INPUT_PAD_START,
    INPUT_PAD_LEFTSTICK,
    INPUT_PAD_RIGHTSTICK,
    INPUT_PAD_LEFTSHOULDER,
    INPUT_PAD_RIGHTSHOULDER,
    INPUT_PAD_DPUP,
    INPUT_PAD_DPDOWN,
    INPUT_PAD_DPLEFT,
    INPUT_PAD_DPRIGHT,
    INPUT_PAD_BUTTON_COUNT
} input_pad_button;
typedef enum input_pad_axis {
    INPUT_PAD_LEFTX = 0,
    INPUT_PAD_LEFTY,
    INPUT_PAD_RIGHTX,
    INPUT_PAD_RIGHTY,
    INPUT_PAD_LEFTTRIGGER,
    INPUT_PAD_RIGHTTRIGGER,
    INPUT_PAD_AXIS_COUNT
} input_pad_axis;

typedef enum input_target {
    INPUT_TARGET_BUTTON = 0,  /* index: button bit */
    INPUT_TARGET_AXIS = 1,    /* index: axis; scale: value of a digital source, factor of an analog one */
    INPUT_TARGET_MOUSE = 2,   /* mouse motion source only; scale, scale_y: sensitivity */
    INPUT_TARGET_MOUSE_X = 3, /* per-frame mouse delta: scale x source value */
    INPUT_TARGET_MOUSE_Y = 4
} input_target;

typedef struct input_binding {
    int source; /* input_source */
    int code;
    int target; /* input_target */
    int index;
    float scale, scale_y;
    int line; /* line in the map file, for messages */
    /* live state */
    float value; /* digital 0/1, analog [-1,1] after the dead zone */
    int latched; /* pressed since the last input_map_take_action: a tap shorter than a chunk still counts */
} input_binding;

typedef struct input_map {
    input_binding *bindings;
    int n, cap;
    float deadzone;
    int n_skipped;            /* lenient mode: bindings to actions the model lacks */
    char skipped[256];        /* their names, for an info line */
    float mouse_dx, mouse_dy; /* relative motion not yet taken, in device units */
} input_map;

/* Key name -> code, -1 when unknown. NULL resolver: key lines are parsed but ignored (libretro). */
typedef int (*input_key_resolver)(const char *name, void *user_data);

/* Parses map text. `path` names the file in messages ("path:line: ..."). Returns 1, or 0 with the
 * message in err. Bindings are appended to `m` (input_map_init first), so a second map can add to
 * the first. */
int input_map_parse(input_map *m, const char *text, const char *path, const wm_model_info *info,
                    input_key_resolver resolve_key, void *user_data, int lenient, char *err, size_t err_size);
/* Reads and parses a file; returns -1 when it cannot be read (message in err), else as parse. */
int input_map_load(input_map *m, const char *path, const wm_model_info *info, input_key_resolver resolve_key,
                   void *user_data, int lenient, char *err, size_t err_size);
void input_map_init(input_map *m);
void input_map_free(input_map *m);

/* Adds bindings for every model action no binding drives yet, so that any model is playable:
 * buttons -> keys Z X C V B N M 1..9 and pad a b x y leftshoulder rightshoulder ...; axes -> pad
 * sticks and key pairs (J/L, I/K, U/O, ...); mouse motion -> sensitivity 1. `key_codes` resolves the
 * key names (may be NULL: no key bindings). Returns the number of bindings added. */
int input_map_add_defaults(input_map *m, const wm_model_info *info, input_key_resolver resolve_key,
                           void *user_data);
/* One line per binding ("key 26 = button up"), for --print-map. */
void input_map_describe(const input_map *m, const wm_model_info *info, char *buf, size_t size);

/* Device events. Each returns 1 when some binding uses the input (a state change that counts for
 * input latency), else 0. */
int input_map_digital(input_map *m, int source, int code, int down);
int input_map_pad_axis(input_map *m, int axis, float value); /* value in [-1, 1] */
int input_map_mouse_motion(input_map *m, float dx, float dy);
/* Releases every input (focus lost, pad removed). */
void input_map_release_all(input_map *m);
/* Forgets taps and mouse motion not yet taken (a reset or a loaded state starts afresh). */
void input_map_clear_pending(input_map *m);

/* The action for the next `n_frames` video frames: buttons held or tapped since the last call, axes
 * summed and clamped, and the mouse motion since the last call spread over the frames. Clears the
 * taps and the motion. */
void input_map_take_action(input_map *m, const wm_model_info *info, int n_frames, wm_action *out);

/* Name tables (lower case); NULL when out of range. */
const char *input_pad_button_name(int b);
const char *input_pad_axis_name(int a);

#endif
