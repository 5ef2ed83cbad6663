/* player.h - one playable stream: the model and session behind the plugin API, chunk generation
 * with live or replayed actions, the timeline that makes it replayable, recording (video + replay
 * JSON) and state slots. Used from one thread at a time (wm-play's generator thread, or the headless
 * loop); no SDL here. */
#ifndef WM_PLAY_PLAYER_H
#define WM_PLAY_PLAYER_H

#include "timeline.h"
#include "video_writer.h" /* host/common */
#include "wm.h"

#include <stddef.h>
#include <stdint.h>

typedef struct player_options {
    const char *model; /* directory or config.json */
    int random_weights;
    uint64_t weight_seed;
    int backend; /* wm_backend_kind */
    int threads;
    uint64_t seed;
    float action_guidance; /* wm_session_params.action_guidance: < 0 = the model's */
    const char *prompt; /* text models */
    const char
        *prompt_embedding; /* embedding models: safetensors with tensor "prompt"; NULL = a zero token */
    wm_log_fn log;
    void *log_user_data;
    wm_abort_fn
        abort_cb; /* polled during generation: non-zero stops the chunk (the session stays as it was) */
    void *abort_user_data;
    const wm_accel_params *accel; /* the session's accelerations at start; NULL = the plugin's defaults */
} player_options;

typedef struct player_slot {
    int used;
    void *state; /* session_state_save blob */
    size_t size;
    timeline stream; /* the stream that led to the state, so that later recordings stay replayable */
    int prompt_kind;
    char *prompt;
} player_slot;

typedef struct player {
    const wm_api *api;
    wm_model *model;
    wm_session *session;
    wm_model_info info;
    wm_stats stats;
    size_t frame_bytes;   /* width * height * 3 */
    int max_chunk_frames; /* video frames of the largest chunk */
    /* the last chunk: chunk_frames frames, the first of index chunk_first */
    uint8_t *chunk_rgb;
    int64_t chunk_first;
    int chunk_frames;
    /* the prompt the next chunk uses */
    int prompt_kind; /* timeline_prompt_kind */
    char *prompt;
    wm_accel_params accel; /* the accelerations the next chunk uses (session_get_accel) */
    timeline tl;           /* metadata + the stream since reset */
    /* recording */
    video_writer *writer;
    char *rec_path;
    timeline rec; /* first_frame + hashes of the recorded frames */
    /* replay: actions and prompts come from here, hashes are checked */
    const timeline *replay;
    int64_t replay_checked, replay_mismatches, replay_first_bad;
    char err[2048];
} player;

/* Loads the model, opens a session, sets the prompt. 1 = ok, else 0 with p->err. */
int player_open(player *p, const wm_api *api, const player_options *o);
void player_close(player *p);

/* Video frames generated since reset / produced by the next chunk. */
int64_t player_frame(const player *p);
int player_next_chunk_frames(const player *p);

/* The prompt of the next chunk on (logged in the timeline). kind: timeline_prompt_kind. */
int player_set_prompt(player *p, int kind, const char *text);
/* The accelerations from the next chunk on (logged in the timeline, so that replays apply them at the
 * same frame). 0 with p->err (the plugin's message) when the plugin refuses them; nothing changes. */
int player_set_accel(player *p, const wm_accel_params *a);
/* Back to frame 0 with an empty cache; keeps prompt, seed and accelerations. Stops a recording. */
int player_reset(player *p);
/* Generates the next chunk into chunk_rgb. `live`: the action of each of its frames; NULL = replay
 * (p->replay's actions, prompts and acceleration changes). Records, hashes and checks the frames. 1 = ok. */
int player_chunk(player *p, const wm_action *live);

/* Recording: frames generated from now on go to `path` (see video_writer.h for the formats) and
 * `path`.json gets the replay file when it stops. 1 = ok. */
int player_record_start(player *p, const char *path);
int player_record_stop(player *p);
int player_recording(const player *p);

int player_slot_save(player *p, player_slot *s);
/* Stops a recording; the accelerations stay as they are (a state holds no settings). */
int player_slot_load(player *p, const player_slot *s);
/* Slot files: `base`.wmstate (the blob) and `base`.json (its stream). */
int player_slot_write(const player *p, const player_slot *s, const char *base);
int player_slot_read(player *p, player_slot *s, const char *base);
void player_slot_free(player_slot *s);

#endif
