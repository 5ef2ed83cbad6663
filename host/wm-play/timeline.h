/* timeline.h - everything that determines a stream since its last reset (seed, prompt changes, one
 * action per video frame), and the replay file that stores it beside a recording:
 *
 *   rec.mp4.json = {
 *     "format": "wm-play-replay", "version": 1,
 *     "model": "/abs/assets/demo/config.json", "model_name": "demo",
 *     "random_weights": true, "weight_seed": 0, "backend": "cpu", "seed": 0,
 *     "action_guidance": -1,                           the session's (optional: absent = -1, the model's)
 *     "width": 192, "height": 128, "fps": 16,
 *     "video": "rec.mp4", "first_frame": 37, "frames": 120,
 *     "prompts": [{"frame": 0, "text": "a walk"}, {"frame": 45, "text": "the city at night"}],
 *     "accel": [{"frame": 0, "tempcache": false, ...}, {"frame": 60, "tempcache": true, ...}],
 *                                                      wm_accel_params from a frame on (optional:
 *                                                      absent = the plugin's defaults, all off)
 *     "actions": ["-", "up", "up+jump", ...],          one per frame from 0 to first_frame+frames-1,
 *                                                      wm-run's action syntax (host/common/actions.h)
 *     "hashes": ["9f0c...", ...]                       FNV-1a 64 of each recorded frame's RGB bytes
 *   }
 *
 * Frames before first_frame are regenerated (not shown) on replay, so a recording started mid-game
 * replays exactly; the hashes let a replay prove it is bit-identical even when the video is lossy. */
#ifndef WM_PLAY_TIMELINE_H
#define WM_PLAY_TIMELINE_H

#include "wm.h"

#include <stddef.h>
#include <stdint.h>

typedef enum timeline_prompt_kind {
    TIMELINE_PROMPT_TEXT = 0,      /* text: the prompt */
    TIMELINE_PROMPT_EMBEDDING = 1, /* text: a safetensors file with tensor "prompt" [L, text_dim] */
    TIMELINE_PROMPT_ZERO = 2       /* one zero token (an embedding model without a prompt file) */
} timeline_prompt_kind;

typedef struct timeline_prompt {
    int64_t frame; /* first video frame generated with it (a chunk boundary) */
    int kind;      /* timeline_prompt_kind */
    char *text;
} timeline_prompt;

/* The acceleration settings (wm_accel_params) from a frame on: they change the frames, so a replay
 * applies them at the same chunk boundaries. */
typedef struct timeline_accel {
    int64_t frame;
    wm_accel_params accel;
} timeline_accel;

typedef struct timeline {
    /* how to rebuild the session */
    char *model;
    char *model_name;
    int random_weights;
    uint64_t weight_seed;
    uint64_t seed;
    float action_guidance; /* the session's (wm_session_params); < 0 = the model's */
    char *backend;
    int width, height;
    double fps;
    /* the stream since reset */
    wm_action *actions; /* action of video frame i */
    int64_t n_actions, cap_actions;
    timeline_prompt *prompts; /* in frame order */
    int n_prompts, cap_prompts;
    timeline_accel *accels; /* in frame order; none: the session's settings are never changed */
    int n_accels, cap_accels;
    /* the recorded span */
    char *video;
    int64_t first_frame;
    uint64_t *hashes;
    int64_t n_hashes, cap_hashes;
    /* as read from a file, before timeline_bind parses them against the model */
    char **action_text;
    int64_t n_action_text;
} timeline;

void timeline_init(timeline *t);
void timeline_free(timeline *t);
/* Drops the stream (after a reset): no actions, no acceleration changes, the prompt `kind, text` from
 * frame 0. 1 = ok. */
int timeline_restart(timeline *t, int kind, const char *text);
int timeline_push_action(timeline *t, const wm_action *a);
/* The prompt from `frame` on (replaces one set at the same frame). 1 = ok. */
int timeline_set_prompt(timeline *t, int64_t frame, int kind, const char *text);
/* The acceleration settings from `frame` on (replaces those set at the same frame; nothing is added
 * when they equal the settings already in effect). 1 = ok. */
int timeline_set_accel(timeline *t, int64_t frame, const wm_accel_params *a);
int timeline_push_hash(timeline *t, uint64_t h);
/* Copies the stream (actions, prompts, acceleration changes) of src into dst, leaving dst's metadata.
 * 1 = ok. */
int timeline_copy_stream(timeline *dst, const timeline *src);
/* The prompt in effect at `frame` (NULL if none). */
const timeline_prompt *timeline_prompt_at(const timeline *t, int64_t frame);
/* The acceleration settings in effect at `frame` (NULL if none were logged). */
const timeline_accel *timeline_accel_at(const timeline *t, int64_t frame);
/* 1 when two settings are the same (field by field). */
int timeline_accel_equal(const wm_accel_params *a, const wm_accel_params *b);

/* Formats an action in wm-run's action syntax, floats with 9 significant digits (exact for fp32). */
void timeline_format_action(const wm_model_info *info, const wm_action *a, char *buf, size_t size);

/* Writes the replay file; `t->actions` must cover every frame up to first_frame + n_hashes. */
int timeline_write(const timeline *t, const wm_model_info *info, const char *path, char *err,
                   size_t err_size);
/* Reads a replay file: metadata, prompts, acceleration changes and hashes; the actions stay text
 * until timeline_bind. */
int timeline_read(timeline *t, const char *path, char *err, size_t err_size);
/* Parses the action strings against the model (errors name "path: actions[i]"). */
int timeline_bind(timeline *t, const wm_model_info *info, const char *path, char *err, size_t err_size);

#endif
