/* actions.h - the action script of wm-run: one line per video frame.
 *
 *   # comment (from '#' to the end of the line); blank lines are skipped
 *   BUTTONS AXIS_1 .. AXIS_n [MOUSE_DX MOUSE_DY]
 *
 * BUTTONS is '-' for none, or button names of the model joined by '+' (case-insensitive), e.g.
 * `up+left`. Then exactly one number in [-1, 1] per axis of the model, in the model's axis order
 * (wm-run --info lists them). A model with a mouse takes an optional delta pair (default 0 0).
 * Line k (counting only action lines) is the action of video frame k-1; after the last line the last
 * action is held. Errors name the file and line: `walk.txt:12: unknown button 'jump' (buttons: ...)`. */
#ifndef WM_RUN_ACTIONS_H
#define WM_RUN_ACTIONS_H

#include "wm.h"

#include <stddef.h>

typedef struct action_script {
    wm_action *actions; /* n, one per video frame */
    int n;
} action_script;

/* Parses `path` against the model's buttons, axes and mouse. 1 = ok; 0 = a malformed line; -1 = the
 * file cannot be read. The message is in err. */
int action_script_load(const char *path, const wm_model_info *info, action_script *out, char *err,
                       size_t err_size);
/* Parses a single line (no comment handling needed); `where` prefixes errors ("file:line"). */
int action_parse_line(const char *line, const wm_model_info *info, wm_action *out, const char *where,
                      char *err, size_t err_size);
/* The action of frame i: the script's line i, the last line after the end, neutral without lines. */
wm_action action_script_get(const action_script *s, long long frame);
void action_script_free(action_script *s);

#endif
