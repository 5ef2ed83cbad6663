/* actions.c - parses wm-run's action script (format in actions.h). */
#include "actions.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int fail(char *err, size_t err_size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t err_size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (err && err_size) vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
    return 0;
}

/* "a, b, c" of n names, for error messages. */
static void join_names(const char *const *names, int n, char *buf, size_t size) {
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < n && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%s", i ? ", " : "", names[i]);
    if (n == 0) snprintf(buf, size, "none");
}

static int parse_buttons(const char *tok, const wm_model_info *info, uint32_t *out, const char *where,
                         char *err, size_t err_size) {
    *out = 0;
    if (!strcmp(tok, "-")) return 1;
    const char *p = tok;
    for (;;) {
        const char *end = strchr(p, '+');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 0)
            return fail(err, err_size, "%s: empty button name in '%s' (join names with '+', '-' for none)",
                        where, tok);
        int found = -1;
        for (int b = 0; b < info->n_buttons; b++)
            if (strlen(info->button_names[b]) == len && !strncasecmp(info->button_names[b], p, len))
                found = b;
        if (found < 0) {
            char names[512];
            join_names(info->button_names, info->n_buttons, names, sizeof names);
            return fail(err, err_size, "%s: unknown button '%.*s' (buttons of this model: %s)", where,
                        (int)len, p, names);
        }
        *out |= 1u << found;
        if (!end) return 1;
        p = end + 1;
    }
}

static int parse_number(const char *tok, float lo, float hi, float *out, const char *what, const char *where,
                        char *err, size_t err_size) {
    char *end;
    errno = 0;
    double v = strtod(tok, &end);
    if (end == tok || *end || errno == ERANGE || !isfinite(v))
        return fail(err, err_size, "%s: %s: '%s' is not a number", where, what, tok);
    if (v < lo || v > hi)
        return fail(err, err_size, "%s: %s: %s is outside [%g, %g]", where, what, tok, lo, hi);
    *out = (float)v;
    return 1;
}

int action_parse_line(const char *line, const wm_model_info *info, wm_action *out, const char *where,
                      char *err, size_t err_size) {
    memset(out, 0, sizeof *out);
    char buf[4096];
    if (strlen(line) >= sizeof buf) return fail(err, err_size, "%s: line too long", where);
    strcpy(buf, line);
    char *tok[WM_MAX_AXES + 4];
    int n = 0;
    for (char *save = NULL, *t = strtok_r(buf, " \t\r\n", &save); t; t = strtok_r(NULL, " \t\r\n", &save)) {
        if (n == WM_MAX_AXES + 3) {
            n++;
            break;
        }
        tok[n++] = t;
    }
    if (n == 0) return fail(err, err_size, "%s: empty action", where);
    const int n_mouse = info->has_mouse ? 2 : 0;
    const int want = 1 + info->n_axes;
    if (n != want && n != want + n_mouse) {
        char names[512];
        join_names(info->axis_names, info->n_axes, names, sizeof names);
        return fail(err, err_size, "%s: expected %d field(s): buttons, %d axis value(s) (%s)%s; got %d",
                    where, want + n_mouse, info->n_axes, names, n_mouse ? " [, mouse dx dy]" : "", n);
    }
    if (!parse_buttons(tok[0], info, &out->buttons, where, err, err_size)) return 0;
    for (int a = 0; a < info->n_axes; a++)
        if (!parse_number(tok[1 + a], -1.0f, 1.0f, &out->axes[a], info->axis_names[a], where, err, err_size))
            return 0;
    if (n == want + n_mouse && n_mouse) {
        if (!parse_number(tok[want], -HUGE_VALF, HUGE_VALF, &out->mouse_dx, "mouse dx", where, err, err_size))
            return 0;
        if (!parse_number(tok[want + 1], -HUGE_VALF, HUGE_VALF, &out->mouse_dy, "mouse dy", where, err,
                          err_size))
            return 0;
    }
    return 1;
}

int action_script_load(const char *path, const wm_model_info *info, action_script *out, char *err,
                       size_t err_size) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (!f) return fail(err, err_size, "%s: cannot open: %s", path, strerror(errno)) - 1;
    char *line = NULL;
    size_t cap = 0, n_alloc = 0;
    int lineno = 0, ok = 1;
    while (ok && getline(&line, &cap, f) >= 0) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        if (strspn(line, " \t\r\n") == strlen(line)) continue;
        if ((size_t)out->n == n_alloc) {
            n_alloc = n_alloc ? 2 * n_alloc : 256;
            wm_action *a = realloc(out->actions, n_alloc * sizeof *a);
            if (!a) {
                ok = fail(err, err_size, "%s: out of memory", path) - 1;
                break;
            }
            out->actions = a;
        }
        char where[1100];
        snprintf(where, sizeof where, "%s:%d", path, lineno);
        ok = action_parse_line(line, info, &out->actions[out->n], where, err, err_size);
        if (ok) out->n++;
    }
    if (ok == 1 && ferror(f)) ok = fail(err, err_size, "%s: read error", path) - 1;
    free(line);
    fclose(f);
    if (ok == 1 && out->n == 0)
        ok = fail(err, err_size, "%s: no actions (one line per frame: buttons axes... [dx dy])", path);
    if (ok != 1) action_script_free(out);
    return ok;
}

wm_action action_script_get(const action_script *s, long long frame) {
    wm_action a;
    memset(&a, 0, sizeof a);
    if (s && s->n > 0) a = s->actions[frame < s->n ? frame : s->n - 1];
    return a;
}

void action_script_free(action_script *s) {
    free(s->actions);
    s->actions = NULL;
    s->n = 0;
}
