/* input_map.c - the input-map parser and the per-frame input state (format in input_map.h). */
#include "input_map.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const PAD_BUTTONS[INPUT_PAD_BUTTON_COUNT] = {"a",
                                                                "b",
                                                                "x",
                                                                "y",
                                                                "back",
                                                                "guide",
                                                                "start",
                                                                "leftstick",
                                                                "rightstick",
                                                                "leftshoulder",
                                                                "rightshoulder",
                                                                "dpup",
                                                                "dpdown",
                                                                "dpleft",
                                                                "dpright"};
static const char *const PAD_AXES[INPUT_PAD_AXIS_COUNT] = {"leftx",  "lefty",       "rightx",
                                                           "righty", "lefttrigger", "righttrigger"};
static const char *const MOUSE_BUTTONS[4] = {NULL, "left", "middle", "right"};

/* an analog source drives a button when its magnitude passes this */
#define ANALOG_BUTTON_THRESHOLD 0.5f
#define MAX_TOKENS              8

const char *input_pad_button_name(int b) {
    return b >= 0 && b < INPUT_PAD_BUTTON_COUNT ? PAD_BUTTONS[b] : NULL;
}
const char *input_pad_axis_name(int a) { return a >= 0 && a < INPUT_PAD_AXIS_COUNT ? PAD_AXES[a] : NULL; }

static int fail(char *err, size_t err_size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t err_size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (err && err_size) vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
    return 0;
}

void input_map_init(input_map *m) {
    memset(m, 0, sizeof *m);
    m->deadzone = 0.15f;
}

void input_map_free(input_map *m) {
    free(m->bindings);
    input_map_init(m);
}

static int lookup(const char *const *names, int n, const char *s) {
    for (int i = 0; i < n; i++)
        if (names[i] && !strcasecmp(names[i], s)) return i;
    return -1;
}

static void join_names(const char *const *names, int n, char *buf, size_t size) {
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < n && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%s", i ? ", " : "", names[i]);
    if (n == 0) snprintf(buf, size, "none");
}

/* Splits a line into tokens at blanks; "double quoted" tokens keep their blanks and '=' is a token of
 * its own even without blanks around it. `line` must have room for 3x its length + 1 (the '=' get
 * blanks around them). Returns the count, -1 for an unterminated quote, MAX_TOKENS + 1 when too many. */
static int tokenize(char *line, char *tok[MAX_TOKENS]) {
    const size_t len = strlen(line);
    char *src = line + 2 * len; /* move the text to the end of the buffer, then spread it out at the start */
    memmove(src, line, len + 1);
    char *w = line;
    int in_quote = 0;
    for (const char *r = src; *r; r++) {
        if (*r == '"') in_quote = !in_quote;
        if (*r == '=' && !in_quote) {
            *w++ = ' ', *w++ = '=', *w++ = ' ';
        } else {
            *w++ = *r;
        }
    }
    *w = 0;
    if (in_quote) return -1;
    int n = 0;
    char *p = line;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
        if (!*p) return n;
        if (n == MAX_TOKENS) return MAX_TOKENS + 1;
        if (*p == '"') {
            char *end = strchr(p + 1, '"');
            *end = 0;
            tok[n++] = p + 1;
            p = end + 1;
        } else {
            tok[n++] = p;
            while (*p && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n' && *p != '"') p++;
            if (*p == '"') return -1; /* a quote inside a word */
            if (*p) *p++ = 0;
        }
    }
}

static int parse_float(const char *s, float lo, float hi, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno == ERANGE || !isfinite(v) || v < lo || v > hi) return 0;
    *out = (float)v;
    return 1;
}

static int push_binding(input_map *m, const input_binding *b) {
    if (m->n == m->cap) {
        int cap = m->cap ? 2 * m->cap : 32;
        input_binding *nb = realloc(m->bindings, (size_t)cap * sizeof *nb);
        if (!nb) return 0;
        m->bindings = nb;
        m->cap = cap;
    }
    m->bindings[m->n++] = *b;
    return 1;
}

static void note_skipped(input_map *m, const char *name) {
    m->n_skipped++;
    size_t len = strlen(m->skipped);
    if (strstr(m->skipped, name)) return;
    if (len + strlen(name) + 3 < sizeof m->skipped)
        snprintf(m->skipped + len, sizeof m->skipped - len, "%s%s", len ? ", " : "", name);
}

/* One non-blank line. 1 = ok (binding appended or skipped), 0 = error. */
static int parse_line(input_map *m, char *line, const char *where, const wm_model_info *info,
                      input_key_resolver resolve_key, void *user, int lenient, char *err, size_t err_size) {
    char *tok[MAX_TOKENS];
    int n = tokenize(line, tok);
    if (n < 0) return fail(err, err_size, "%s: unterminated quote", where);
    if (n > MAX_TOKENS) return fail(err, err_size, "%s: too many fields", where);
    if (n == 0) return 1;

    if (!strcasecmp(tok[0], "deadzone")) {
        if (n != 2 || !parse_float(tok[1], 0.0f, 0.95f, &m->deadzone))
            return fail(err, err_size, "%s: expected 'deadzone VALUE' with VALUE in [0, 0.95]", where);
        return 1;
    }

    /* source: key NAME | pad NAME | mouse | mouse BUTTON */
    input_binding b;
    memset(&b, 0, sizeof b);
    b.scale = 1.0f;
    b.scale_y = 1.0f;
    int eq = -1;
    for (int i = 0; i < n; i++)
        if (!strcmp(tok[i], "=")) {
            eq = i;
            break;
        }
    if (eq < 0)
        return fail(err, err_size, "%s: expected 'SOURCE = TARGET' (e.g. 'key W = button up')", where);
    int key_ignored = 0;
    if (!strcasecmp(tok[0], "key")) {
        if (eq != 2) return fail(err, err_size, "%s: expected 'key NAME = ...'", where);
        b.source = INPUT_SOURCE_KEY;
        if (resolve_key) {
            char name[128];
            snprintf(name, sizeof name, "%s", tok[1]);
            for (char *c = name; *c; c++)
                if (*c == '_') *c = ' ';
            b.code = resolve_key(name, user);
            if (b.code < 0) return fail(err, err_size, "%s: unknown key '%s'", where, tok[1]);
        } else {
            key_ignored = 1;
        }
    } else if (!strcasecmp(tok[0], "pad")) {
        if (eq != 2) return fail(err, err_size, "%s: expected 'pad NAME = ...'", where);
        int c = lookup(PAD_BUTTONS, INPUT_PAD_BUTTON_COUNT, tok[1]);
        if (c >= 0) {
            b.source = INPUT_SOURCE_PAD_BUTTON;
            b.code = c;
        } else if ((c = lookup(PAD_AXES, INPUT_PAD_AXIS_COUNT, tok[1])) >= 0) {
            b.source = INPUT_SOURCE_PAD_AXIS;
            b.code = c;
        } else {
            char b1[256], a1[128];
            join_names(PAD_BUTTONS, INPUT_PAD_BUTTON_COUNT, b1, sizeof b1);
            join_names(PAD_AXES, INPUT_PAD_AXIS_COUNT, a1, sizeof a1);
            return fail(err, err_size, "%s: unknown pad input '%s' (buttons: %s; axes: %s)", where, tok[1],
                        b1, a1);
        }
    } else if (!strcasecmp(tok[0], "mouse")) {
        if (eq == 1) {
            b.source = INPUT_SOURCE_MOUSE_MOTION;
        } else if (eq == 2) {
            int c = lookup(MOUSE_BUTTONS, 4, tok[1]);
            if (c < 0)
                return fail(err, err_size, "%s: unknown mouse button '%s' (left, middle, right)", where,
                            tok[1]);
            b.source = INPUT_SOURCE_MOUSE_BUTTON;
            b.code = c;
        } else {
            return fail(err, err_size, "%s: expected 'mouse = ...' or 'mouse BUTTON = ...'", where);
        }
    } else {
        return fail(err, err_size, "%s: unknown input '%s' (key, pad, mouse or deadzone)", where, tok[0]);
    }
    b.line = 0;
    const int analog = b.source == INPUT_SOURCE_PAD_AXIS;

    /* target: button NAME | axis NAME [SCALE] | mouse [SX [SY]] | mouse x|y SCALE */
    char **t = tok + eq + 1;
    int nt = n - eq - 1;
    if (nt < 1) return fail(err, err_size, "%s: missing target after '=' (button, axis or mouse)", where);
    const char *missing = NULL; /* an action name the model lacks */
    if (!strcasecmp(t[0], "button")) {
        if (nt != 2) return fail(err, err_size, "%s: expected 'button NAME'", where);
        if (b.source == INPUT_SOURCE_MOUSE_MOTION)
            return fail(err, err_size, "%s: mouse motion drives 'mouse SENSITIVITY', not a button", where);
        b.target = INPUT_TARGET_BUTTON;
        b.index = lookup(info->button_names, info->n_buttons, t[1]);
        if (b.index < 0) missing = t[1];
    } else if (!strcasecmp(t[0], "axis")) {
        if (nt != 2 && nt != 3) return fail(err, err_size, "%s: expected 'axis NAME [VALUE]'", where);
        if (b.source == INPUT_SOURCE_MOUSE_MOTION)
            return fail(err, err_size, "%s: mouse motion drives 'mouse SENSITIVITY', not an axis", where);
        b.target = INPUT_TARGET_AXIS;
        b.index = lookup(info->axis_names, info->n_axes, t[1]);
        if (nt == 3) {
            const float lim = analog ? 16.0f : 1.0f;
            if (!parse_float(t[2], -lim, lim, &b.scale))
                return fail(err, err_size, "%s: axis %s: '%s' is not a number in [%g, %g]%s", where, t[1],
                            t[2], -lim, lim, analog ? " (scale of the pad axis)" : " (value while held)");
        }
        if (b.index < 0) missing = t[1];
    } else if (!strcasecmp(t[0], "mouse")) {
        if (b.source == INPUT_SOURCE_MOUSE_MOTION) {
            if (nt > 3)
                return fail(err, err_size, "%s: expected 'mouse [SENSITIVITY [SENSITIVITY_Y]]'", where);
            b.target = INPUT_TARGET_MOUSE;
            if (nt >= 2 && !parse_float(t[1], -1000.0f, 1000.0f, &b.scale))
                return fail(err, err_size, "%s: mouse sensitivity '%s' is not a number in [-1000, 1000]",
                            where, t[1]);
            b.scale_y = b.scale;
            if (nt == 3 && !parse_float(t[2], -1000.0f, 1000.0f, &b.scale_y))
                return fail(err, err_size, "%s: mouse sensitivity '%s' is not a number in [-1000, 1000]",
                            where, t[2]);
        } else {
            if (nt != 3 || (strcasecmp(t[1], "x") && strcasecmp(t[1], "y")))
                return fail(err, err_size,
                            "%s: expected 'mouse x SCALE' or 'mouse y SCALE' (delta per frame)", where);
            b.target = strcasecmp(t[1], "x") ? INPUT_TARGET_MOUSE_Y : INPUT_TARGET_MOUSE_X;
            if (!parse_float(t[2], -1000.0f, 1000.0f, &b.scale))
                return fail(err, err_size, "%s: mouse %s: '%s' is not a number in [-1000, 1000]", where, t[1],
                            t[2]);
        }
        if (!info->has_mouse) missing = "mouse";
    } else {
        return fail(err, err_size, "%s: unknown target '%s' (button NAME, axis NAME [VALUE], mouse ...)",
                    where, t[0]);
    }
    if (b.source == INPUT_SOURCE_MOUSE_MOTION && b.target != INPUT_TARGET_MOUSE)
        return fail(err, err_size, "%s: mouse motion can only drive 'mouse'", where);

    if (missing) {
        if (lenient) {
            note_skipped(m, missing);
            return 1;
        }
        if (!strcmp(missing, "mouse"))
            return fail(err, err_size, "%s: model '%s' takes no mouse input", where,
                        info->name ? info->name : "?");
        const int is_button = b.target == INPUT_TARGET_BUTTON;
        char names[512];
        join_names(is_button ? info->button_names : info->axis_names,
                   is_button ? info->n_buttons : info->n_axes, names, sizeof names);
        return fail(err, err_size, "%s: unknown %s '%s' (%s of model '%s': %s)", where,
                    is_button ? "button" : "axis", missing, is_button ? "buttons" : "axes",
                    info->name ? info->name : "?", names);
    }
    if (key_ignored) return 1;
    if (!push_binding(m, &b)) return fail(err, err_size, "%s: out of memory", where);
    return 1;
}

int input_map_parse(input_map *m, const char *text, const char *path, const wm_model_info *info,
                    input_key_resolver resolve_key, void *user_data, int lenient, char *err,
                    size_t err_size) {
    int lineno = 0;
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        lineno++;
        char line[3 * 1024 + 1], where[1200];
        snprintf(where, sizeof where, "%s:%d", path, lineno);
        if (len >= 1024) return fail(err, err_size, "%s: line too long", where);
        memcpy(line, p, len);
        line[len] = 0;
        /* '#' outside quotes starts a comment */
        int in_quote = 0;
        for (char *c = line; *c; c++) {
            if (*c == '"') in_quote = !in_quote;
            if (*c == '#' && !in_quote) {
                *c = 0;
                break;
            }
        }
        const int before = m->n;
        if (!parse_line(m, line, where, info, resolve_key, user_data, lenient, err, err_size)) return 0;
        if (m->n > before) m->bindings[m->n - 1].line = lineno;
        p += len + (nl ? 1 : 0);
    }
    return 1;
}

int input_map_load(input_map *m, const char *path, const wm_model_info *info, input_key_resolver resolve_key,
                   void *user_data, int lenient, char *err, size_t err_size) {
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, err_size, "%s: cannot open: %s", path, strerror(errno)) - 1;
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 8192;
            char *nt = realloc(text, cap);
            if (!nt) {
                free(text);
                fclose(f);
                return fail(err, err_size, "%s: out of memory", path);
            }
            text = nt;
        }
        size_t k = fread(text + len, 1, 4096, f);
        len += k;
        if (k < 4096) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(text);
        return fail(err, err_size, "%s: read error", path) - 1;
    }
    text[len] = 0;
    if (strlen(text) != len) {
        free(text);
        return fail(err, err_size, "%s: not a text file (NUL byte)", path);
    }
    int ok = input_map_parse(m, text, path, info, resolve_key, user_data, lenient, err, err_size);
    free(text);
    return ok;
}

/* ---- defaults for actions nothing drives ---- */

static int drives(const input_map *m, int target, int index) {
    for (int i = 0; i < m->n; i++) {
        const input_binding *b = &m->bindings[i];
        if (target == INPUT_TARGET_MOUSE) {
            if (b->target == INPUT_TARGET_MOUSE || b->target == INPUT_TARGET_MOUSE_X ||
                b->target == INPUT_TARGET_MOUSE_Y)
                return 1;
        } else if (b->target == target && b->index == index) {
            return 1;
        }
    }
    return 0;
}

static int uses_source(const input_map *m, int source, int code) {
    for (int i = 0; i < m->n; i++)
        if (m->bindings[i].source == source && m->bindings[i].code == code) return 1;
    return 0;
}

int input_map_add_defaults(input_map *m, const wm_model_info *info, input_key_resolver resolve_key,
                           void *user_data) {
    static const char *const KEYS[] = {"Z", "X", "C", "V", "B", "N", "M", "1", "2", "3", "4", "5",
                                       "6", "7", "8", "9", "0", "R", "F", "G", "T", "Y", "H", "Q"};
    static const int PADS[] = {INPUT_PAD_A,
                               INPUT_PAD_B,
                               INPUT_PAD_X,
                               INPUT_PAD_Y,
                               INPUT_PAD_LEFTSHOULDER,
                               INPUT_PAD_RIGHTSHOULDER,
                               INPUT_PAD_LEFTSTICK,
                               INPUT_PAD_RIGHTSTICK,
                               INPUT_PAD_DPUP,
                               INPUT_PAD_DPDOWN,
                               INPUT_PAD_DPLEFT,
                               INPUT_PAD_DPRIGHT};
    static const char *const AXIS_KEYS[][2] = {
        {"J", "L"}, {"I", "K"}, {"U", "O"}, {"Home", "End"}, {"Insert", "Delete"}, {"Page Up", "Page Down"}};
    int added = 0, next_key = 0, next_pad = 0;
    input_binding b;
    for (int i = 0; i < info->n_buttons; i++) {
        if (drives(m, INPUT_TARGET_BUTTON, i)) continue;
        memset(&b, 0, sizeof b);
        b.target = INPUT_TARGET_BUTTON;
        b.index = i;
        b.scale = b.scale_y = 1.0f;
        while (resolve_key && next_key < (int)(sizeof KEYS / sizeof *KEYS)) {
            int code = resolve_key(KEYS[next_key++], user_data);
            if (code >= 0 && !uses_source(m, INPUT_SOURCE_KEY, code)) {
                b.source = INPUT_SOURCE_KEY;
                b.code = code;
                added += push_binding(m, &b);
                break;
            }
        }
        while (next_pad < (int)(sizeof PADS / sizeof *PADS)) {
            int code = PADS[next_pad++];
            if (!uses_source(m, INPUT_SOURCE_PAD_BUTTON, code)) {
                b.source = INPUT_SOURCE_PAD_BUTTON;
                b.code = code;
                added += push_binding(m, &b);
                break;
            }
        }
    }
    int next_axis = 0;
    for (int i = 0; i < info->n_axes; i++) {
        if (drives(m, INPUT_TARGET_AXIS, i)) continue;
        memset(&b, 0, sizeof b);
        b.target = INPUT_TARGET_AXIS;
        b.index = i;
        b.scale_y = 1.0f;
        for (; next_axis < INPUT_PAD_AXIS_COUNT; next_axis++)
            if (!uses_source(m, INPUT_SOURCE_PAD_AXIS, next_axis)) break;
        if (next_axis < INPUT_PAD_AXIS_COUNT) {
            b.source = INPUT_SOURCE_PAD_AXIS;
            b.code = next_axis++;
            b.scale = 1.0f;
            added += push_binding(m, &b);
        }
        if (resolve_key && i < (int)(sizeof AXIS_KEYS / sizeof *AXIS_KEYS)) {
            for (int s = 0; s < 2; s++) {
                int code = resolve_key(AXIS_KEYS[i][s], user_data);
                if (code < 0 || uses_source(m, INPUT_SOURCE_KEY, code)) continue;
                b.source = INPUT_SOURCE_KEY;
                b.code = code;
                b.scale = s ? 1.0f : -1.0f;
                added += push_binding(m, &b);
            }
        }
    }
    if (info->has_mouse && !drives(m, INPUT_TARGET_MOUSE, 0)) {
        memset(&b, 0, sizeof b);
        b.source = INPUT_SOURCE_MOUSE_MOTION;
        b.target = INPUT_TARGET_MOUSE;
        b.scale = b.scale_y = 1.0f;
        added += push_binding(m, &b);
    }
    return added;
}

void input_map_describe(const input_map *m, const wm_model_info *info, char *buf, size_t size) {
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < m->n && len < size; i++) {
        const input_binding *b = &m->bindings[i];
        char src[64], dst[96];
        switch (b->source) {
        case INPUT_SOURCE_KEY: snprintf(src, sizeof src, "key #%d", b->code); break;
        case INPUT_SOURCE_PAD_BUTTON:
        case INPUT_SOURCE_PAD_AXIS:
            snprintf(src, sizeof src, "pad %s",
                     b->source == INPUT_SOURCE_PAD_AXIS ? PAD_AXES[b->code] : PAD_BUTTONS[b->code]);
            break;
        case INPUT_SOURCE_MOUSE_MOTION: snprintf(src, sizeof src, "mouse"); break;
        default: snprintf(src, sizeof src, "mouse %s", MOUSE_BUTTONS[b->code]); break;
        }
        switch (b->target) {
        case INPUT_TARGET_BUTTON: snprintf(dst, sizeof dst, "button %s", info->button_names[b->index]); break;
        case INPUT_TARGET_AXIS:
            snprintf(dst, sizeof dst, "axis %s %g", info->axis_names[b->index], b->scale);
            break;
        case INPUT_TARGET_MOUSE: snprintf(dst, sizeof dst, "mouse %g %g", b->scale, b->scale_y); break;
        default:
            snprintf(dst, sizeof dst, "mouse %s %g", b->target == INPUT_TARGET_MOUSE_X ? "x" : "y", b->scale);
            break;
        }
        len += (size_t)snprintf(buf + len, size - len, "%-22s = %s%s\n", src, dst,
                                b->line ? "" : "   (default)");
    }
}

/* ---- live state ---- */

int input_map_digital(input_map *m, int source, int code, int down) {
    int used = 0;
    for (int i = 0; i < m->n; i++) {
        input_binding *b = &m->bindings[i];
        if (b->source != source || b->code != code) continue;
        b->value = down ? 1.0f : 0.0f;
        if (down) b->latched = 1;
        used = 1;
    }
    return used;
}

int input_map_pad_axis(input_map *m, int axis, float value) {
    if (value > 1.0f) value = 1.0f;
    if (value < -1.0f) value = -1.0f;
    /* rescale past the dead zone so that the output still reaches +-1 */
    const float mag = fabsf(value);
    float v = mag <= m->deadzone ? 0.0f : copysignf((mag - m->deadzone) / (1.0f - m->deadzone), value);
    int used = 0;
    for (int i = 0; i < m->n; i++) {
        input_binding *b = &m->bindings[i];
        if (b->source != INPUT_SOURCE_PAD_AXIS || b->code != axis) continue;
        if (b->value != v) used = 1;
        b->value = v;
        if (b->target == INPUT_TARGET_BUTTON && fabsf(v) >= ANALOG_BUTTON_THRESHOLD) b->latched = 1;
    }
    return used;
}

int input_map_mouse_motion(input_map *m, float dx, float dy) {
    for (int i = 0; i < m->n; i++)
        if (m->bindings[i].source == INPUT_SOURCE_MOUSE_MOTION) {
            m->mouse_dx += dx;
            m->mouse_dy += dy;
            return 1;
        }
    return 0;
}

void input_map_release_all(input_map *m) {
    for (int i = 0; i < m->n; i++) m->bindings[i].value = 0.0f;
}

void input_map_clear_pending(input_map *m) {
    for (int i = 0; i < m->n; i++) m->bindings[i].latched = 0;
    m->mouse_dx = m->mouse_dy = 0.0f;
}

static float clamp1(float v) { return v < -1.0f ? -1.0f : v > 1.0f ? 1.0f : v; }

void input_map_take_action(input_map *m, const wm_model_info *info, int n_frames, wm_action *out) {
    memset(out, 0, sizeof *out);
    if (n_frames < 1) n_frames = 1;
    for (int i = 0; i < m->n; i++) {
        input_binding *b = &m->bindings[i];
        const int analog = b->source == INPUT_SOURCE_PAD_AXIS;
        float v = b->value;
        if (!analog && b->latched) v = 1.0f; /* a tap since the last action */
        switch (b->target) {
        case INPUT_TARGET_BUTTON:
            if (analog ? fabsf(v) >= ANALOG_BUTTON_THRESHOLD || b->latched : v > 0.0f)
                out->buttons |= 1u << b->index;
            break;
        case INPUT_TARGET_AXIS: out->axes[b->index] += v * b->scale; break;
        case INPUT_TARGET_MOUSE:
            out->mouse_dx += m->mouse_dx * b->scale / (float)n_frames;
            out->mouse_dy += m->mouse_dy * b->scale_y / (float)n_frames;
            break;
        case INPUT_TARGET_MOUSE_X: out->mouse_dx += v * b->scale; break;
        case INPUT_TARGET_MOUSE_Y: out->mouse_dy += v * b->scale; break;
        }
        b->latched = 0;
    }
    for (int a = 0; a < WM_MAX_AXES; a++) out->axes[a] = a < info->n_axes ? clamp1(out->axes[a]) : 0.0f;
    if (!info->has_mouse) out->mouse_dx = out->mouse_dy = 0.0f;
    if (info->n_buttons < 32) out->buttons &= (1u << info->n_buttons) - 1u;
    m->mouse_dx = m->mouse_dy = 0.0f;
}
