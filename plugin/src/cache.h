/* cache.h - a session's self-attention K/V cache: one backend store per layer, its committed row
 * count per layer, and the policy that bounds it (docs/ACCEL.md).
 *
 * Rows, not frames, are the unit: with TempCache on, layers merge different rows, so each layer has
 * its own count. Rows stay in age order (the age of a row is that of its newest member): sinks first,
 * then the oldest, then the newest, so eviction always removes the contiguous block after the sinks.
 *
 * Policies:
 * - window W frames (sinks S): after each commit, keep the sinks and the rows whose newest frame is
 *   among the last (W - F - S), so the next chunk fits (Self-Forcing's rolling window). With TempCache a
 *   merged group stays as long as it keeps being refreshed, but never holds content the window
 *   would have dropped: models trained with a window never see older relative positions;
 * - unbounded: grow up to the store's capacity, then refuse the next chunk;
 * - TempCache on (either policy): after each commit, the chunk's rows merge into older groups
 *   whose pre-RoPE keys are similar enough, then the oldest non-sink rows are evicted down to the
 *   budget (rows per layer). */
#ifndef WM_CACHE_H
#define WM_CACHE_H

#include "backend.h"

typedef struct wm_cache {
    wm_backend *be;
    int layers, dim, tpf, chunk_rows;
    int window, sinks;   /* frames; window -1 = unbounded */
    int64_t store_rows;  /* rows each store holds: the committed budget plus one chunk */
    int64_t sink_rows;   /* rows that are never merged or evicted (the first `sinks` frames) */
    wm_kv **kv;          /* [layers] */
    int64_t *rows;       /* [layers] committed rows */
    float **count;       /* [layers][store_rows] group sizes (host); 1 for a plain row */
    int64_t **frame;     /* [layers][store_rows] latent frame of each row's newest member (host) */
    unsigned char *biased; /* [layers] the store has a bias plane (kept zero beyond the rows) */
    /* TempCache */
    int tc_on;
    float tc_threshold;
    int64_t tc_budget;   /* committed rows per layer */
    /* per-commit scratch (host) */
    int64_t *best, *keep, *dst, *src;
    float *sim, *wa, *wb, *bias;
    /* counters since reset */
    int64_t merges_last, evictions_last, merges_total, evictions_total;
} wm_cache;

/* Allocates stores of `store_frames` frames of rows per layer (the policy's committed frames plus one
 * chunk). */
wm_status wm_cache_init(wm_cache *c, wm_backend *be, int layers, int dim, int tpf, int chunk_frames, int window,
                        int sinks, int store_frames);
void wm_cache_free(wm_cache *c);
void wm_cache_reset(wm_cache *c);

/* TempCache settings; budget in rows (must leave room for a chunk in the store). */
wm_status wm_cache_set_tempcache(wm_cache *c, int on, float threshold, int64_t budget_rows);

/* Rows the next chunk may still append, or an error when an unbounded store is full. */
wm_status wm_cache_check_room(const wm_cache *c);

/* The chunk's rows [rows[l], rows[l] + chunk_rows) of every layer, latent frames frame0.., were
 * written by the cache pass: make them committed, merge (TempCache), evict (policy). */
wm_status wm_cache_commit(wm_cache *c, int64_t frame0);

/* Drops every committed row after the sink frames (LongLive's re-cache rebuilds them). */
void wm_cache_drop_after_sinks(wm_cache *c);
/* Committed rows, the most over layers, and their sum. */
int64_t wm_cache_max_rows(const wm_cache *c);
int64_t wm_cache_total_rows(const wm_cache *c);

/* Snapshots: the walk calls this for save (w), load (r) or size (neither). */
typedef struct wm_cache_io {
    uint8_t *w;
    const uint8_t *r;
    size_t off;
} wm_cache_io;
void wm_cache_io_walk(wm_cache *c, wm_cache_io *io);
/* The same walk for rows [0, rows) of one store's K and V (host fp32 through a bounce buffer: the blob
 * may be unaligned for floats); also serves stores outside the cache (Rolling Forcing's sink). */
void wm_kv_io(wm_backend *be, wm_kv *kv, int64_t rows, int dim, wm_cache_io *io);
/* Validates a snapshot's row counts before anything is loaded (0 = fine). */
int wm_cache_io_check(const wm_cache *c, const uint8_t *blob_at_cache);

#endif
