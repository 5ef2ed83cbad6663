/* cache.c - the self-attention cache: commit, TempCache merging, eviction, snapshots (cache.h,
 * docs/ACCEL.md). */
#include "cache.h"

#include "common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

wm_status wm_cache_init(wm_cache *c, wm_backend *be, int layers, int dim, int tpf, int chunk_frames, int window,
                        int sinks, int store_frames) {
    memset(c, 0, sizeof *c);
    c->be = be;
    c->layers = layers, c->dim = dim, c->tpf = tpf, c->chunk_rows = chunk_frames * tpf;
    c->window = window, c->sinks = sinks;
    c->store_rows = (int64_t)store_frames * tpf;
    c->tc_threshold = 0.95f;
    c->tc_budget = c->store_rows - c->chunk_rows;
    c->kv = calloc((size_t)layers, sizeof *c->kv);
    c->rows = calloc((size_t)layers, sizeof *c->rows);
    c->count = calloc((size_t)layers, sizeof *c->count);
    c->frame = calloc((size_t)layers, sizeof *c->frame);
    c->biased = calloc((size_t)layers, 1);
    const size_t n = (size_t)c->store_rows;
    c->best = malloc(n * sizeof(int64_t)), c->keep = malloc(n * sizeof(int64_t));
    c->dst = malloc(n * sizeof(int64_t)), c->src = malloc(n * sizeof(int64_t));
    c->sim = malloc(n * sizeof(float)), c->wa = malloc(n * sizeof(float)), c->wb = malloc(n * sizeof(float));
    c->bias = malloc(n * sizeof(float));
    if (!c->kv || !c->rows || !c->count || !c->frame || !c->biased || !c->best || !c->keep || !c->dst || !c->src || !c->sim || !c->wa || !c->wb ||
        !c->bias)
        return wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of host memory for the cache tables");
    for (int l = 0; l < layers; l++) {
        if (!(c->count[l] = malloc(n * sizeof(float))) || !(c->frame[l] = calloc(n, sizeof(int64_t))))
            return wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of host memory for the cache tables");
        if (!(c->kv[l] = be->kv_new(be, c->store_rows, dim)))
            return wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of memory for the KV cache (%d frames x %d tokens x %d layers)",
                                store_frames, tpf, layers);
    }
    wm_cache_reset(c);
    return WM_OK;
}

void wm_cache_free(wm_cache *c) {
    for (int l = 0; c->kv && l < c->layers; l++)
        if (c->kv[l]) c->be->kv_free(c->be, c->kv[l]);
    for (int l = 0; c->count && l < c->layers; l++) free(c->count[l]);
    for (int l = 0; c->frame && l < c->layers; l++) free(c->frame[l]);
    free(c->frame);
    free(c->kv), free(c->rows), free(c->count), free(c->biased);
    free(c->best), free(c->keep), free(c->dst), free(c->src), free(c->sim), free(c->wa), free(c->wb), free(c->bias);
    memset(c, 0, sizeof *c);
}

/* Bias rows [r, r+n) back to 0 (no group) where layer l's store has a bias plane. */
static void clear_bias(wm_cache *c, int l, int64_t r, int64_t n) {
    if (r + n > c->store_rows) n = c->store_rows - r;
    if (!c->biased[l] || n <= 0) return;
    memset(c->bias, 0, (size_t)n * sizeof(float));
    c->be->kv_set_bias(c->be, c->kv[l], r, c->bias, n);
}

void wm_cache_reset(wm_cache *c) {
    for (int l = 0; l < c->layers; l++) {
        c->rows[l] = 0;
        for (int64_t i = 0; i < c->store_rows; i++) c->count[l][i] = 1.0f;
        clear_bias(c, l, 0, c->store_rows);
    }
    c->sink_rows = 0;
    c->merges_last = c->evictions_last = c->merges_total = c->evictions_total = 0;
}

void wm_cache_drop_after_sinks(wm_cache *c) {
    for (int l = 0; l < c->layers; l++) {
        if (c->rows[l] <= c->sink_rows) continue;
        for (int64_t i = c->sink_rows; i < c->rows[l]; i++) c->count[l][i] = 1.0f;
        clear_bias(c, l, c->sink_rows, c->rows[l] - c->sink_rows);
        c->rows[l] = c->sink_rows;
    }
}

wm_status wm_cache_set_tempcache(wm_cache *c, int on, float threshold, int64_t budget) {
    if (!on) {
        c->tc_on = 0;
        return WM_OK;
    }
    if (!(threshold > -1.0f) || !isfinite(threshold))
        return wm_set_error(WM_ERR_INVALID_ARGUMENT, "tempcache threshold %g: need a cosine in (-1, 1] (or > 1 to never merge)",
                            threshold);
    const int64_t room = c->store_rows - c->chunk_rows;
    if (budget <= 0) budget = room;
    const int64_t min_budget = (int64_t)c->sinks * c->tpf + c->chunk_rows;
    if (budget > room || budget < min_budget)
        return wm_set_error(WM_ERR_INVALID_ARGUMENT,
                            "tempcache budget %lld tokens per layer: need %lld..%lld (sinks + one chunk .. the cache's "
                            "allocation of %lld rows less one chunk)",
                            (long long)budget, (long long)min_budget, (long long)room, (long long)c->store_rows);
    c->tc_on = 1;
    c->tc_threshold = threshold;
    c->tc_budget = budget;
    return WM_OK;
}

wm_status wm_cache_check_room(const wm_cache *c) {
    for (int l = 0; l < c->layers; l++)
        if (c->rows[l] + c->chunk_rows > c->store_rows)
            return wm_set_error(WM_ERR_STATE,
                                "KV cache full: %lld tokens cached per layer, capacity %lld (unbounded policy); raise "
                                "max_cache_frames, use a window, or turn TempCache on",
                                (long long)c->rows[l], (long long)c->store_rows);
    return WM_OK;
}

/* Drops `drop` rows right after the sinks (the oldest) of layer l. */
static void evict(wm_cache *c, int l, int64_t drop) {
    if (drop <= 0) return;
    wm_backend *be = c->be;
    const int64_t s = c->sink_rows, rest = c->rows[l] - s - drop;
    be->kv_move(be, c->kv[l], s, s + drop, rest);
    memmove(c->count[l] + s, c->count[l] + s + drop, (size_t)rest * sizeof(float));
    memmove(c->frame[l] + s, c->frame[l] + s + drop, (size_t)rest * sizeof(int64_t));
    c->rows[l] -= drop;
    c->evictions_last += drop;
}

/* TempCache on layer l, whose newest chunk sits at rows [r0, r0 + N): each new row finds its most
 * similar older non-sink row; pairs at or above the threshold merge into the new row (the group's
 * representative: the newest key), one old row per new row and one new row per old row (the more
 * similar wins), then the merged old rows are dropped. */
static void merge_layer(wm_cache *c, int l) {
    wm_backend *be = c->be;
    wm_kv *kv = c->kv[l];
    const int64_t N = c->chunk_rows, r0 = c->rows[l] - N, c0 = c->sink_rows, nc = r0 - c0;
    if (nc <= 0) return;
    be->kv_match(be, kv, r0, N, c0, nc, c->best, c->sim);
    /* claim[j - c0]: the new row that takes old row j (or -1); the more similar new row wins */
    int64_t *claim = c->keep; /* reused: nc <= store_rows */
    for (int64_t j = 0; j < nc; j++) claim[j] = -1;
    for (int64_t i = 0; i < N; i++) {
        const int64_t j = c->best[i];
        if (j < c0 || j >= r0 || !(c->sim[i] >= c->tc_threshold)) continue;
        const int64_t prev = claim[j - c0];
        if (prev < 0 || c->sim[i] > c->sim[prev]) claim[j - c0] = i;
    }
    int64_t n = 0;
    float *cnt = c->count[l];
    for (int64_t j = 0; j < nc; j++) {
        const int64_t i = claim[j];
        if (i < 0) continue;
        const float mo = cnt[c0 + j], mn = cnt[r0 + i], m = mo + mn;
        c->dst[n] = r0 + i, c->src[n] = c0 + j;
        c->wa[n] = mn / m, c->wb[n] = mo / m; /* count-weighted mean of the values */
        cnt[r0 + i] = m;
        cnt[c0 + j] = 0.0f; /* marks the row for removal */
        n++;
    }
    if (n == 0) return;
    be->kv_merge(be, kv, c->dst, c->src, c->wa, c->wb, n);
    /* the chunk's new group sizes as log-count bias, then drop the merged rows (planes move with rows) */
    for (int64_t i = 0; i < N; i++) c->bias[i] = logf(cnt[r0 + i]);
    be->kv_set_bias(be, kv, r0, c->bias, N);
    c->biased[l] = 1;
    int64_t k = 0;
    int64_t *fr = c->frame[l];
    for (int64_t j = 0; j < c->rows[l]; j++)
        if (cnt[j] != 0.0f) {
            c->keep[k] = j;
            cnt[k] = cnt[j];
            fr[k] = fr[j];
            k++;
        }
    be->kv_compact(be, kv, c->keep, k);
    for (int64_t j = k; j < c->store_rows; j++) cnt[j] = 1.0f;
    c->merges_last += n;
    c->rows[l] = k;
}

/* Rows after the sinks whose newest frame is older than `oldest` (rows are in age order). */
static int64_t older_than(const wm_cache *c, int l, int64_t oldest) {
    int64_t j = c->sink_rows;
    while (j < c->rows[l] && c->frame[l][j] < oldest) j++;
    return j - c->sink_rows;
}

wm_status wm_cache_commit(wm_cache *c, int64_t frame0) {
    const int64_t N = c->chunk_rows;
    c->merges_last = c->evictions_last = 0;
    for (int l = 0; l < c->layers; l++) {
        c->rows[l] += N;
        for (int64_t i = 0; i < N; i++) {
            c->count[l][c->rows[l] - N + i] = 1.0f;
            c->frame[l][c->rows[l] - N + i] = frame0 + i / c->tpf;
        }
    }
    /* the first `sinks` frames committed become the sinks */
    const int64_t want_sinks = (int64_t)c->sinks * c->tpf;
    if (c->sink_rows < want_sinks) {
        int64_t r = c->rows[0];
        for (int l = 1; l < c->layers; l++) r = c->rows[l] < r ? c->rows[l] : r;
        c->sink_rows = r < want_sinks ? r : want_sinks;
    }
    /* the window (sinks included) holds (W - F) frames for the next chunk: the sinks and the frames
     * >= next - (W - F - S) */
    const int64_t F = N / c->tpf, next = frame0 + F, oldest = next - (c->window - F - c->sinks);
    for (int l = 0; l < c->layers; l++) {
        if (c->tc_on) merge_layer(c, l);
        if (c->window > 0) evict(c, l, older_than(c, l, oldest));
        if (c->tc_on && c->rows[l] > c->tc_budget) evict(c, l, c->rows[l] - c->tc_budget);
        /* compaction and eviction leave old bias values beyond the rows: the next chunk is written there */
        clear_bias(c, l, c->rows[l], N);
    }
    wm_status fail = wm_take_failure();
    if (fail != WM_OK) return fail;
    c->merges_total += c->merges_last;
    c->evictions_total += c->evictions_last;
    return WM_OK;
}

int64_t wm_cache_max_rows(const wm_cache *c) {
    int64_t m = 0;
    for (int l = 0; l < c->layers; l++) m = c->rows[l] > m ? c->rows[l] : m;
    return m;
}
int64_t wm_cache_total_rows(const wm_cache *c) {
    int64_t t = 0;
    for (int l = 0; l < c->layers; l++) t += c->rows[l];
    return t;
}

/* ---- snapshots: every plane of every store at full capacity (fixed size), host fp32 ---- */
static void io_bytes(wm_cache_io *io, void *p, size_t n) {
    if (io->w) memcpy(io->w + io->off, p, n);
    else if (io->r) memcpy(p, io->r + io->off, n);
    io->off += n;
}

void wm_kv_io(wm_backend *be, wm_kv *kv, int64_t rows, int dim, wm_cache_io *io) {
    const size_t n = (size_t)rows * dim, bytes = 2 * n * sizeof(float);
    if (io->w || io->r) {
        float *buf = malloc(bytes ? bytes : 1);
        if (!buf) {
            wm_note_failure(wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of host memory for a snapshot plane"));
        } else if (io->w) {
            be->kv_read(be, kv, buf, buf + n, 0, rows);
            memcpy(io->w + io->off, buf, bytes);
        } else {
            memcpy(buf, io->r + io->off, bytes);
            be->kv_load(be, kv, buf, buf + n, 0, rows);
        }
        free(buf);
    }
    io->off += bytes;
}

/* one plane of rows x width floats through a bounce buffer (the blob may be unaligned for floats) */
enum { PLANE_BIAS, PLANE_MATCH };
static void io_plane(wm_cache *c, wm_cache_io *io, int l, int plane) {
    wm_backend *be = c->be;
    const int64_t R = c->store_rows;
    const size_t width = plane == PLANE_BIAS ? 1 : (size_t)c->dim;
    const size_t bytes = (size_t)R * width * sizeof(float);
    if (io->w || io->r) {
        float *buf = malloc(bytes ? bytes : 1);
        if (!buf) {
            wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of host memory for a snapshot plane");
            wm_note_failure(WM_ERR_OUT_OF_MEMORY);
        } else if (io->w) {
            if (plane == PLANE_BIAS) be->kv_get_bias(be, c->kv[l], buf, 0, R);
            else be->kv_read_match(be, c->kv[l], buf, 0, R);
            memcpy(io->w + io->off, buf, bytes);
        } else {
            memcpy(buf, io->r + io->off, bytes);
            if (plane == PLANE_BIAS) {
                int any = 0;
                for (int64_t i = 0; i < R && !any; i++) any = buf[i] != 0.0f;
                if (any || c->biased[l]) { /* a dense store stays without one */
                    be->kv_set_bias(be, c->kv[l], 0, buf, R);
                    c->biased[l] = 1;
                }
            } else {
                int any = 0;
                for (size_t i = 0; i < (size_t)R * c->dim && !any; i++) any = buf[i] != 0.0f;
                if (any) be->kv_load_match(be, c->kv[l], buf, 0, R);
            }
        }
        free(buf);
    }
    io->off += bytes;
}

void wm_cache_io_walk(wm_cache *c, wm_cache_io *io) {
    io_bytes(io, c->rows, (size_t)c->layers * sizeof(int64_t));
    io_bytes(io, &c->sink_rows, sizeof c->sink_rows);
    io_bytes(io, &c->merges_total, sizeof c->merges_total);
    io_bytes(io, &c->evictions_total, sizeof c->evictions_total);
    for (int l = 0; l < c->layers; l++) {
        io_bytes(io, c->count[l], (size_t)c->store_rows * sizeof(float));
        io_bytes(io, c->frame[l], (size_t)c->store_rows * sizeof(int64_t));
        wm_kv_io(c->be, c->kv[l], c->store_rows, c->dim, io);
        io_plane(c, io, l, PLANE_BIAS);
        if (c->be->kv_read_match) io_plane(c, io, l, PLANE_MATCH);
    }
}

int wm_cache_io_check(const wm_cache *c, const uint8_t *p) {
    for (int l = 0; l < c->layers; l++) {
        int64_t r;
        memcpy(&r, p + (size_t)l * sizeof r, sizeof r);
        if (r < 0 || r > c->store_rows) return -1;
    }
    int64_t s;
    memcpy(&s, p + (size_t)c->layers * sizeof(int64_t), sizeof s);
    return s < 0 || s > c->store_rows ? -1 : 0;
}
