/* wm.h - the public C ABI of the wm world-model plugin.
 *
 * A host sees only this header. It dlopens libwm.so, looks up the single exported symbol
 * `wm_get_api`, asks for WM_API_VERSION and gets a table of function pointers. The table is
 * append-only: a later plugin keeps every field at its offset and only adds fields at the end, so a
 * host built against version N works with any plugin that answers version N.
 *
 *   void *so = dlopen("libwm.so", RTLD_NOW);
 *   wm_get_api_fn get = (wm_get_api_fn)dlsym(so, WM_GET_API_SYMBOL);
 *   const wm_api *api = get(WM_API_VERSION);   // NULL: the plugin does not speak this version
 *
 * Objects:
 *   wm_model    immutable weights and configuration; one model serves many sessions.
 *   wm_session  one stream: prompt, action queue, KV cache, RNG position, frame index.
 *
 * Thread safety: wm_model functions are safe from any thread once the model is loaded (it is
 * read-only). A wm_session must be used by one thread at a time (not necessarily the one that made
 * it); different sessions may run on different threads concurrently: each session computes on a
 * backend of its own that shares the model's weights (on CUDA its own stream, library handles and
 * scratch memory, so sessions on several threads run side by side on one GPU), and gives the same
 * frames as it would alone. Free a model's sessions before the model. last_error() is per thread.
 * Callbacks run on the calling thread.
 *
 * Errors: every function returns a wm_status; on failure api->last_error() returns a readable
 * message for the calling thread. Nothing in the plugin exits or aborts the host process.
 */
#ifndef WM_H
#define WM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WM_API_VERSION 1u
#define WM_GET_API_SYMBOL "wm_get_api"
#define WM_MAX_AXES 8
#define WM_MAX_BUTTONS 32
#define WM_MAX_ACTION_GUIDANCE 20.0f /* wm_session_params.action_guidance and config "action_guidance" */

typedef enum wm_status {
    WM_OK = 0,
    WM_ERR_INVALID_ARGUMENT = 1, /* NULL pointer, bad size field, value out of range */
    WM_ERR_IO = 2,               /* file missing or unreadable */
    WM_ERR_FORMAT = 3,           /* malformed safetensors / JSON / state blob */
    WM_ERR_CONFIG = 4,           /* unknown or invalid config key */
    WM_ERR_SHAPE = 5,            /* tensor missing, extra or of the wrong shape */
    WM_ERR_OUT_OF_MEMORY = 6,
    WM_ERR_UNSUPPORTED = 7,      /* feature the model or build lacks (e.g. text prompt) */
    WM_ERR_NO_DEVICE = 8,        /* the requested backend has no device */
    WM_ERR_STATE = 9,            /* call not valid now (no prompt, cache full, ...) */
    WM_ERR_ABORTED = 10,         /* the abort callback asked to stop */
    WM_ERR_INTERNAL = 11
} wm_status;

typedef enum wm_backend_kind {
    WM_BACKEND_AUTO = 0, /* CUDA when a device is present, else CPU */
    WM_BACKEND_CPU = 1,
    WM_BACKEND_CUDA = 2
} wm_backend_kind;

typedef enum wm_prompt_kind {
    WM_PROMPT_EMBEDDINGS = 0, /* float [L <= text_len][text_dim] */
    WM_PROMPT_TEXT = 1        /* UTF-8 text; the model ships its tokenizer and encoder */
} wm_prompt_kind;

typedef enum wm_log_level { WM_LOG_DEBUG = 0, WM_LOG_INFO = 1, WM_LOG_WARN = 2, WM_LOG_ERROR = 3 } wm_log_level;

typedef void (*wm_log_fn)(void *user_data, wm_log_level level, const char *message);
/* Polled during long work (loading, each forward pass). Return non-zero to stop: the call then
 * returns WM_ERR_ABORTED and the session is left as it was before the call. */
typedef int (*wm_abort_fn)(void *user_data);

typedef struct wm_model_params {
    size_t size;          /* sizeof(wm_model_params); set by model_params_init */
    const char *path;     /* model directory (config.json + model.safetensors) or a config.json */
    int random_weights;   /* 1: ignore model.safetensors, draw seeded random weights */
    uint64_t weight_seed; /* seed for random_weights */
    int backend;          /* wm_backend_kind */
    int n_threads;        /* CPU threads; 0 = all cores */
    wm_log_fn log;        /* NULL = silent */
    void *log_user_data;
    wm_abort_fn abort_cb; /* NULL = never abort */
    void *abort_user_data;
} wm_model_params;

typedef struct wm_model_info {
    size_t size;                      /* sizeof(wm_model_info) of the caller */
    const char *name;
    int width, height;                /* RGB frame size; 0 when the model has no decoder */
    float fps;
    int latent_frames_per_chunk;
    int latent_channels, latent_height, latent_width;
    int time_upscale;                 /* video frames per latent frame (1 without decoder) */
    int prompt_kind;                  /* wm_prompt_kind */
    int text_len, text_dim;
    int n_buttons;
    const char *const *button_names;  /* n_buttons names, bit i of wm_action.buttons */
    int n_axes;
    const char *const *axis_names;
    int has_mouse;
    int backend;                      /* wm_backend_kind in use */
    uint32_t backends_available;      /* bit (1 << wm_backend_kind) per backend this build can run */
    int64_t n_params;
    int window_frames, sink_frames;   /* default cache policy (-1 = unbounded) */
    int max_cache_frames;
    const char *device_name;          /* the backend's device, e.g. "NVIDIA H100 80GB HBM3" */
    float action_guidance;            /* the config's default (wm_session_params.action_guidance); 0 = off */
    int action_guidance_steps;        /* denoising steps it applies to, from the first */
    int denoising_steps;
} wm_model_info;

/* The FAST-AR accelerations (docs/ACCEL.md), each independent; all off = dense attention.
 * Set at session_new (inside wm_session_params) or live with session_set_accel. A model whose config
 * says "sampler": "rolling_forcing" refuses them (WM_ERR_UNSUPPORTED). */
typedef struct wm_accel_params {
    /* TempCache: KV-cache compression by temporal correspondence. After each chunk is committed, a
     * new key row whose pre-RoPE key has cosine >= tc_threshold with an older row's takes that row
     * into its group (the group keeps the newest key, the count-weighted mean value, and attention
     * adds log(group size) to its logit). Sinks are never merged. The cache then keeps at most
     * tc_budget_tokens rows per layer, evicting the oldest non-sink rows when nothing more merges;
     * with a window, groups whose newest member the window would have dropped go too. */
    int tempcache;            /* 0 off (default), 1 on */
    float tc_threshold;       /* default 0.95; > 1 never merges */
    int64_t tc_budget_tokens; /* per layer; 0 = the cache's allocation less one chunk */
    /* AnnSA: block-sparse self-attention. Queries and keys of each head are hashed by sign-LSH
     * (sa_bits per table, sa_tables tables; projections drawn from the session seed), sorted by
     * bucket, and a 128-query block attends a 128-key block only when they share a bucket; the
     * chunk's own keys are always attended. */
    int annsa;                /* 0 off (default), 1 on */
    int sa_bits;              /* 1..8, default 1 */
    int sa_tables;            /* 1..4, default 1 */
    float sa_dense_steps;     /* fraction of the denoising steps, from the first, that stay dense; default 0.3 */
    uint64_t sa_layers;       /* bit l: layer l sparse (layers >= 64 follow bit 63); 0 = all layers */
    /* AnnCA: per latent frame, cross-attention only to the prompt tokens that share a bucket with
     * any of the frame's queries (same schedule as AnnSA). A model whose prompt context (text_len)
     * is shorter than ca_min_tokens keeps dense cross-attention: there is nothing to save on a few
     * keys, and what the buckets leave out changes the rollout (docs/ACCEL.md). */
    int annca;                /* 0 off (default), 1 on */
    int ca_bits;              /* 1..8, default 2 */
    int ca_tables;            /* 1..4, default 2 */
    /* Recall probe: after each chunk, this many sampled queries of one layer (rotating) are scored
     * densely and the share of their attention mass the sparse modules keep is reported in wm_stats.
     * It downloads the layer's keys: a measurement tool, off by default. */
    int recall_probe;         /* 0 off, else sampled queries (<= 256) */
    int ca_min_tokens;        /* AnnCA only for text_len >= this; default 64, 0 = always */
} wm_accel_params;

typedef struct wm_session_params {
    size_t size;             /* sizeof(wm_session_params); set by session_params_init */
    uint64_t seed;           /* noise seed */
    int window_frames;       /* -2 = model default, -1 = unbounded, else window in latent frames
                              * (a rolling_forcing model takes only its own spans: -2 and sink -1) */
    int sink_frames;         /* -1 = model default */
    int max_cache_frames;    /* unbounded policy capacity; 0 = model default */
    wm_abort_fn abort_cb;
    void *abort_user_data;
    wm_accel_params accel;   /* session_params_init: every module off, defaults filled in */
    /* Action guidance (docs/MODEL.md section 2): on the model's guided denoising steps the velocity
     * becomes v + w (v - v_idle), v_idle being the same forward under the neutral action (no button,
     * axes and mouse at 0); it strengthens the response to the controls at the cost of one more
     * forward per guided step (none while the chunk's actions are all neutral). < 0 (default): the
     * model's config.json ("action_guidance", 0 when absent); 0 = off; at most 20. */
    float action_guidance;
} wm_session_params;

/* One video frame's input. Buttons outside the model's n_buttons, axes outside [-1,1] and
 * non-finite values are rejected with WM_ERR_INVALID_ARGUMENT. */
typedef struct wm_action {
    uint32_t buttons;
    float axes[WM_MAX_AXES];
    float mouse_dx, mouse_dy;
} wm_action;

typedef struct wm_stats {
    size_t size;              /* sizeof(wm_stats) of the caller */
    int64_t frames_generated; /* video frames produced since reset */
    int64_t latent_frames;    /* latent frames committed since reset */
    int64_t chunks;
    double last_chunk_ms;     /* wall time of the last chunk, all stages */
    double last_dit_ms;       /* denoising forwards + cache pass */
    double last_decode_ms;
    double last_prompt_ms;    /* text encoding + cross-attention K/V, last prompt change */
    double total_ms;
    int64_t cache_tokens;     /* self-attention K/V tokens held per layer */
    int64_t cache_bytes;      /* all layers, K and V */
    int64_t cache_capacity_bytes;
    int64_t backend_bytes;      /* memory held now for the model and this session (device memory on
                                 * CUDA): weights plus this session's buffers, not other sessions' */
    int64_t backend_peak_bytes; /* the most seen after any chunk of this session */
    /* accelerations (docs/ACCEL.md); cache_tokens above is the largest layer's row count */
    int64_t cache_tokens_total;  /* rows held, summed over layers */
    int64_t tc_merges;           /* TempCache rows merged by the last chunk, all layers */
    int64_t tc_evictions;        /* rows evicted by the last chunk, all layers (any policy) */
    int64_t tc_merges_total, tc_evictions_total; /* since reset */
    double sa_density;           /* AnnSA: attended / all (query, key) block pairs of the last chunk's
                                    sparse forwards; 1 when off */
    double ca_density;           /* AnnCA: attended / all (frame, head, prompt token); 1 when off */
    double sa_recall, ca_recall; /* recall probe of the last chunk; -1 when not measured */
} wm_stats;

typedef struct wm_model wm_model;
typedef struct wm_session wm_session;

typedef struct wm_api {
    uint32_t version;     /* WM_API_VERSION the table was built for */
    uint32_t struct_size; /* sizeof(wm_api) of the plugin: fields beyond it are absent */

    const char *(*status_string)(wm_status status);
    const char *(*last_error)(void); /* message of this thread's last failure ("" if none) */
    const char *(*build_info)(void);

    void (*model_params_init)(wm_model_params *params);
    wm_status (*model_load)(const wm_model_params *params, wm_model **out);
    void (*model_free)(wm_model *model);
    wm_status (*model_get_info)(const wm_model *model, wm_model_info *info);

    void (*session_params_init)(wm_session_params *params);
    wm_status (*session_new)(wm_model *model, const wm_session_params *params, wm_session **out);
    void (*session_free)(wm_session *session);

    /* The prompt can change at any time; the next chunk uses it. */
    wm_status (*session_set_prompt_text)(wm_session *s, const char *text);
    wm_status (*session_set_prompt_embeddings)(wm_session *s, const float *emb, int n_tokens, int dim);

    /* Queue the action of the next video frame not yet generated. */
    wm_status (*session_push_action)(wm_session *s, const wm_action *action);
    /* Generate the next chunk now (frames become readable). *n_frames: video frames it produced.
     * (A rolling_forcing model's first call after session_new or a reset fills its window of chunks at
     * staggered noise levels: as many forwards as denoising steps; later calls take one.) */
    wm_status (*session_generate)(wm_session *s, int *n_frames);
    /* Copy the next video frame (RGB8, rows of `pitch` bytes) into rgb; generates a chunk when no
     * frame is waiting. *frame_index (may be NULL) gets the frame's index since reset. */
    wm_status (*session_read_frame)(wm_session *s, uint8_t *rgb, size_t pitch, size_t buf_size,
                                    int64_t *frame_index);
    /* Latents [F][C][H][W] of the last generated chunk, fp32 (n = buffer elements). */
    wm_status (*session_read_latents)(wm_session *s, float *dst, size_t n, int *n_frames);
    wm_status (*session_reset)(wm_session *s); /* frame 0, empty cache; keeps prompt and seed */

    /* Snapshot: the size is fixed for the session's lifetime. */
    wm_status (*session_state_size)(const wm_session *s, size_t *size);
    wm_status (*session_state_save)(const wm_session *s, void *dst, size_t size);
    wm_status (*session_state_load)(wm_session *s, const void *src, size_t size);

    wm_status (*session_get_stats)(const wm_session *s, wm_stats *stats);

    /* Context instead of generation: commits n_frames (a multiple of latent_frames_per_chunk) known
     * latents [n_frames][C][H][W] (e.g. real frames through the model's encoder) at the next frame
     * positions, chunk by chunk, through the same cache pass a generated chunk gets; they are decoded
     * like generated frames and consume queued actions. *n_video (may be NULL): video frames made. */
    wm_status (*session_prefill_latents)(wm_session *s, const float *latents, int n_frames, int *n_video);

    /* Switch the accelerations live (takes effect from the next chunk; the cache keeps its merged
     * rows when TempCache goes off). Fails, changing nothing, on invalid settings. */
    wm_status (*session_set_accel)(wm_session *s, const wm_accel_params *accel);
    wm_status (*session_get_accel)(const wm_session *s, wm_accel_params *accel);
} wm_api;

typedef const wm_api *(*wm_get_api_fn)(uint32_t version);

#if defined(WM_BUILDING_PLUGIN)
#define WM_EXPORT __attribute__((visibility("default")))
#else
#define WM_EXPORT
#endif

/* The one exported symbol. Returns NULL when `version` is not supported. */
WM_EXPORT const wm_api *wm_get_api(uint32_t version);

#ifdef __cplusplus
}
#endif
#endif /* WM_H */
