/* profile.h - WM_PROFILE=1: per-op timing of a backend (profile.c). */
#ifndef WM_PROFILE_H
#define WM_PROFILE_H

#include "backend.h"

/* Wraps the ops of `be` in place; the report goes to stderr when the backend is destroyed, and as
 * JSON to json_path when it is not NULL. */
void wm_backend_profile(wm_backend *be, const char *json_path);

#endif
