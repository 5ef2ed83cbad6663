/* accel.h - the session side of TempCache, AnnSA and AnnCA (docs/ACCEL.md): settings and their
 * validation, the sign-LSH tables, the per-step schedule (which forward is sparse), density
 * counters and the recall probe. The numerical work is in the backends (backend.h). */
#ifndef WM_ACCEL_H
#define WM_ACCEL_H

#include "wm.h"

struct wm_session;
struct wm_attn_plan;

/* Every module off, the documented defaults filled in. */
void wm_accel_defaults(wm_accel_params *a);

/* Validates `a` and makes it the session's (tables rebuilt, TempCache set on the cache). On failure
 * nothing changes. */
wm_status wm_accel_apply(struct wm_session *s, const wm_accel_params *a);
void wm_accel_free(struct wm_session *s);

/* The attention plan of denoising step k of nsteps; k == nsteps is the cache pass. */
void wm_accel_plan(struct wm_session *s, int k, int nsteps, struct wm_attn_plan *plan);

/* After a chunk: density counters and the probe's result into the session's stats. */
void wm_accel_chunk_done(struct wm_session *s);

#endif
