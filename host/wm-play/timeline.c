/* timeline.c - see timeline.h. JSON through cJSON (Debian's libcjson). */
#include "timeline.h"

#include "actions.h" /* host/common: the action syntax */

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t err_size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t err_size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (err && err_size) vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
    return 0;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

void timeline_init(timeline *t) { memset(t, 0, sizeof *t); }

static void free_prompts(timeline *t) {
    for (int i = 0; i < t->n_prompts; i++) free(t->prompts[i].text);
    t->n_prompts = 0;
}

static void free_action_text(timeline *t) {
    for (int64_t i = 0; i < t->n_action_text; i++) free(t->action_text[i]);
    free(t->action_text);
    t->action_text = NULL;
    t->n_action_text = 0;
}

void timeline_free(timeline *t) {
    free(t->model);
    free(t->model_name);
    free(t->backend);
    free(t->video);
    free(t->actions);
    free_prompts(t);
    free(t->prompts);
    free(t->accels);
    free(t->hashes);
    free_action_text(t);
    timeline_init(t);
}

int timeline_restart(timeline *t, int kind, const char *text) {
    t->n_actions = 0;
    t->n_accels = 0;
    free_prompts(t);
    return timeline_set_prompt(t, 0, kind, text);
}

int timeline_push_action(timeline *t, const wm_action *a) {
    if (t->n_actions == t->cap_actions) {
        int64_t cap = t->cap_actions ? 2 * t->cap_actions : 1024;
        wm_action *na = realloc(t->actions, (size_t)cap * sizeof *na);
        if (!na) return 0;
        t->actions = na;
        t->cap_actions = cap;
    }
    t->actions[t->n_actions++] = *a;
    return 1;
}

int timeline_set_prompt(timeline *t, int64_t frame, int kind, const char *text) {
    char *copy = dup_or_null(text);
    if (text && !copy) return 0;
    if (t->n_prompts > 0 && t->prompts[t->n_prompts - 1].frame == frame) {
        free(t->prompts[t->n_prompts - 1].text);
        t->prompts[t->n_prompts - 1].kind = kind;
        t->prompts[t->n_prompts - 1].text = copy;
        return 1;
    }
    if (t->n_prompts == t->cap_prompts) {
        int cap = t->cap_prompts ? 2 * t->cap_prompts : 8;
        timeline_prompt *np = realloc(t->prompts, (size_t)cap * sizeof *np);
        if (!np) {
            free(copy);
            return 0;
        }
        t->prompts = np;
        t->cap_prompts = cap;
    }
    t->prompts[t->n_prompts++] = (timeline_prompt){frame, kind, copy};
    return 1;
}

int timeline_accel_equal(const wm_accel_params *a, const wm_accel_params *b) {
    return a->tempcache == b->tempcache && a->tc_threshold == b->tc_threshold &&
           a->tc_budget_tokens == b->tc_budget_tokens && a->annsa == b->annsa && a->sa_bits == b->sa_bits &&
           a->sa_tables == b->sa_tables && a->sa_dense_steps == b->sa_dense_steps &&
           a->sa_layers == b->sa_layers && a->annca == b->annca && a->ca_bits == b->ca_bits &&
           a->ca_tables == b->ca_tables && a->recall_probe == b->recall_probe && a->ca_min_tokens == b->ca_min_tokens;
}

int timeline_set_accel(timeline *t, int64_t frame, const wm_accel_params *a) {
    if (t->n_accels > 0 && t->accels[t->n_accels - 1].frame == frame) t->n_accels--; /* replaced */
    if (t->n_accels > 0 && timeline_accel_equal(&t->accels[t->n_accels - 1].accel, a)) return 1;
    if (t->n_accels == t->cap_accels) {
        int cap = t->cap_accels ? 2 * t->cap_accels : 8;
        timeline_accel *na = realloc(t->accels, (size_t)cap * sizeof *na);
        if (!na) return 0;
        t->accels = na;
        t->cap_accels = cap;
    }
    t->accels[t->n_accels].frame = frame;
    t->accels[t->n_accels++].accel = *a;
    return 1;
}

const timeline_accel *timeline_accel_at(const timeline *t, int64_t frame) {
    const timeline_accel *p = NULL;
    for (int i = 0; i < t->n_accels && t->accels[i].frame <= frame; i++) p = &t->accels[i];
    return p;
}

int timeline_push_hash(timeline *t, uint64_t h) {
    if (t->n_hashes == t->cap_hashes) {
        int64_t cap = t->cap_hashes ? 2 * t->cap_hashes : 1024;
        uint64_t *nh = realloc(t->hashes, (size_t)cap * sizeof *nh);
        if (!nh) return 0;
        t->hashes = nh;
        t->cap_hashes = cap;
    }
    t->hashes[t->n_hashes++] = h;
    return 1;
}

int timeline_copy_stream(timeline *dst, const timeline *src) {
    dst->n_actions = 0;
    free_prompts(dst);
    for (int64_t i = 0; i < src->n_actions; i++)
        if (!timeline_push_action(dst, &src->actions[i])) return 0;
    for (int i = 0; i < src->n_prompts; i++)
        if (!timeline_set_prompt(dst, src->prompts[i].frame, src->prompts[i].kind, src->prompts[i].text))
            return 0;
    dst->n_accels = 0;
    for (int i = 0; i < src->n_accels; i++)
        if (!timeline_set_accel(dst, src->accels[i].frame, &src->accels[i].accel)) return 0;
    return 1;
}

const timeline_prompt *timeline_prompt_at(const timeline *t, int64_t frame) {
    const timeline_prompt *p = NULL;
    for (int i = 0; i < t->n_prompts && t->prompts[i].frame <= frame; i++) p = &t->prompts[i];
    return p;
}

void timeline_format_action(const wm_model_info *info, const wm_action *a, char *buf, size_t size) {
    size_t len = 0;
    buf[0] = 0;
    for (int b = 0; b < info->n_buttons && len < size; b++)
        if (a->buttons & (1u << b))
            len += (size_t)snprintf(buf + len, size - len, "%s%s", len ? "+" : "", info->button_names[b]);
    if (len == 0) len = (size_t)snprintf(buf, size, "-");
    for (int i = 0; i < info->n_axes && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, " %.9g", a->axes[i]);
    if (info->has_mouse && len < size)
        snprintf(buf + len, size - len, " %.9g %.9g", a->mouse_dx, a->mouse_dy);
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

int timeline_write(const timeline *t, const wm_model_info *info, const char *path, char *err,
                   size_t err_size) {
    const int64_t end = t->first_frame + t->n_hashes;
    if (t->n_actions < end)
        return fail(err, err_size,
                    "%s: the action log covers %" PRId64 " frames, the recording ends at %" PRId64, path,
                    t->n_actions, end);
    cJSON *root = cJSON_CreateObject();
    if (!root) return fail(err, err_size, "%s: out of memory", path);
    char hex[32];
    cJSON_AddStringToObject(root, "format", "wm-play-replay");
    cJSON_AddNumberToObject(root, "version", 1);
    cJSON_AddStringToObject(root, "model", t->model ? t->model : "");
    cJSON_AddStringToObject(root, "model_name", info->name ? info->name : "");
    cJSON_AddBoolToObject(root, "random_weights", t->random_weights);
    /* 64-bit values as strings: JSON numbers are doubles */
    snprintf(hex, sizeof hex, "%" PRIu64, t->weight_seed);
    cJSON_AddStringToObject(root, "weight_seed", hex);
    snprintf(hex, sizeof hex, "%" PRIu64, t->seed);
    cJSON_AddStringToObject(root, "seed", hex);
    cJSON_AddNumberToObject(root, "action_guidance", t->action_guidance);
    cJSON_AddStringToObject(root, "backend", t->backend ? t->backend : "auto");
    cJSON_AddNumberToObject(root, "width", info->width);
    cJSON_AddNumberToObject(root, "height", info->height);
    cJSON_AddNumberToObject(root, "fps", info->fps);
    cJSON_AddStringToObject(root, "video", t->video ? base_name(t->video) : "");
    cJSON_AddNumberToObject(root, "first_frame", (double)t->first_frame);
    cJSON_AddNumberToObject(root, "frames", (double)t->n_hashes);
    cJSON *prompts = cJSON_AddArrayToObject(root, "prompts");
    for (int i = 0; i < t->n_prompts; i++) {
        if (t->prompts[i].frame >= end && i > 0) break;
        cJSON *p = cJSON_CreateObject();
        cJSON_AddNumberToObject(p, "frame", (double)t->prompts[i].frame);
        if (t->prompts[i].kind == TIMELINE_PROMPT_TEXT)
            cJSON_AddStringToObject(p, "text", t->prompts[i].text ? t->prompts[i].text : "");
        else if (t->prompts[i].kind == TIMELINE_PROMPT_EMBEDDING)
            cJSON_AddStringToObject(p, "embedding", t->prompts[i].text);
        else
            cJSON_AddNullToObject(p, "embedding");
        cJSON_AddItemToArray(prompts, p);
    }
    if (t->n_accels > 0) {
        cJSON *accel = cJSON_AddArrayToObject(root, "accel");
        for (int i = 0; i < t->n_accels; i++) {
            if (t->accels[i].frame >= end && i > 0) break;
            const wm_accel_params *a = &t->accels[i].accel;
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "frame", (double)t->accels[i].frame);
            cJSON_AddBoolToObject(o, "tempcache", a->tempcache);
            cJSON_AddNumberToObject(o, "tc_threshold", a->tc_threshold);
            cJSON_AddNumberToObject(o, "tc_budget_tokens", (double)a->tc_budget_tokens);
            cJSON_AddBoolToObject(o, "annsa", a->annsa);
            cJSON_AddNumberToObject(o, "sa_bits", a->sa_bits);
            cJSON_AddNumberToObject(o, "sa_tables", a->sa_tables);
            cJSON_AddNumberToObject(o, "sa_dense_steps", a->sa_dense_steps);
            snprintf(hex, sizeof hex, "0x%" PRIx64, a->sa_layers); /* 64 bits: a string */
            cJSON_AddStringToObject(o, "sa_layers", hex);
            cJSON_AddBoolToObject(o, "annca", a->annca);
            cJSON_AddNumberToObject(o, "ca_bits", a->ca_bits);
            cJSON_AddNumberToObject(o, "ca_tables", a->ca_tables);
            cJSON_AddNumberToObject(o, "recall_probe", a->recall_probe);
            cJSON_AddNumberToObject(o, "ca_min_tokens", a->ca_min_tokens);
            cJSON_AddItemToArray(accel, o);
        }
    }
    cJSON *actions = cJSON_AddArrayToObject(root, "actions");
    cJSON *hashes = cJSON_AddArrayToObject(root, "hashes");
    for (int64_t i = 0; i < end; i++) {
        char buf[512];
        timeline_format_action(info, &t->actions[i], buf, sizeof buf);
        cJSON_AddItemToArray(actions, cJSON_CreateString(buf));
    }
    for (int64_t i = 0; i < t->n_hashes; i++) {
        snprintf(hex, sizeof hex, "%016" PRIx64, t->hashes[i]);
        cJSON_AddItemToArray(hashes, cJSON_CreateString(hex));
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return fail(err, err_size, "%s: out of memory", path);
    FILE *f = fopen(path, "w");
    if (!f) {
        free(text);
        return fail(err, err_size, "%s: cannot write: %s", path, strerror(errno));
    }
    int ok = fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    ok = (fclose(f) == 0) && ok;
    free(text);
    return ok ? 1 : fail(err, err_size, "%s: write failed", path);
}

static int get_u64(const cJSON *o, const char *key, uint64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsString(v)) {
        char *end;
        errno = 0;
        unsigned long long x = strtoull(v->valuestring, &end, 10);
        if (end == v->valuestring || *end || errno) return 0;
        *out = x;
        return 1;
    }
    if (cJSON_IsNumber(v) && v->valuedouble >= 0) {
        *out = (uint64_t)v->valuedouble;
        return 1;
    }
    return 0;
}

/* One "accel" entry; every field is required (the plugin's defaults are not known here), except
 * ca_min_tokens, which timelines written before it existed lack: 0, AnnCA on any prompt, as then. */
static int read_accel(const cJSON *o, int64_t *frame, wm_accel_params *a) {
    static const char *const BOOLS[] = {"tempcache", "annsa", "annca"};
    static const char *const NUMS[] = {"frame",     "tc_threshold", "tc_budget_tokens", "sa_bits",
                                       "sa_tables", "sa_dense_steps", "ca_bits",        "ca_tables",
                                       "recall_probe"};
    double v[9];
    int b[3];
    if (!cJSON_IsObject(o)) return 0;
    for (int i = 0; i < 3; i++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, BOOLS[i]);
        if (!cJSON_IsBool(x)) return 0;
        b[i] = cJSON_IsTrue(x);
    }
    for (int i = 0; i < 9; i++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, NUMS[i]);
        if (!cJSON_IsNumber(x)) return 0;
        v[i] = x->valuedouble;
    }
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(o, "sa_layers");
    if (!cJSON_IsString(layers)) return 0;
    char *end;
    errno = 0;
    const unsigned long long mask = strtoull(layers->valuestring, &end, 0);
    if (end == layers->valuestring || *end || errno) return 0;
    if (v[0] < 0 || v[0] > 9e15 || v[2] < 0 || v[2] > 9e15) return 0;
    for (int i = 3; i < 9; i++)
        if (i != 5 && (v[i] < -1e9 || v[i] > 1e9)) return 0; /* ints; the plugin checks the ranges */
    memset(a, 0, sizeof *a);
    *frame = (int64_t)v[0];
    a->tempcache = b[0];
    a->tc_threshold = (float)v[1];
    a->tc_budget_tokens = (int64_t)v[2];
    a->annsa = b[1];
    a->sa_bits = (int)v[3];
    a->sa_tables = (int)v[4];
    a->sa_dense_steps = (float)v[5];
    a->sa_layers = mask;
    a->annca = b[2];
    a->ca_bits = (int)v[6];
    a->ca_tables = (int)v[7];
    a->recall_probe = (int)v[8];
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(o, "ca_min_tokens");
    if (mt && (!cJSON_IsNumber(mt) || mt->valuedouble < 0 || mt->valuedouble > 1e9)) return 0;
    a->ca_min_tokens = mt ? (int)mt->valuedouble : 0;
    return 1;
}

int timeline_read(timeline *t, const char *path, char *err, size_t err_size) {
    timeline_free(t);
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, err_size, "%s: cannot open: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = size >= 0 ? malloc((size_t)size + 1) : NULL;
    if (!text || fread(text, 1, (size_t)size, f) != (size_t)size) {
        free(text);
        fclose(f);
        return fail(err, err_size, "%s: read error", path);
    }
    fclose(f);
    text[size] = 0;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root) return fail(err, err_size, "%s: not valid JSON", path);
    int ok = 0;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *first = cJSON_GetObjectItemCaseSensitive(root, "first_frame");
    const cJSON *prompts = cJSON_GetObjectItemCaseSensitive(root, "prompts");
    const cJSON *actions = cJSON_GetObjectItemCaseSensitive(root, "actions");
    const cJSON *hashes = cJSON_GetObjectItemCaseSensitive(root, "hashes");
    const cJSON *v;
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "wm-play-replay")) {
        fail(err, err_size, "%s: not a wm-play replay file (\"format\": \"wm-play-replay\" missing)", path);
        goto done;
    }
    if (!cJSON_IsString(model) || !cJSON_IsNumber(first) || first->valuedouble < 0 ||
        !cJSON_IsArray(prompts) || !cJSON_IsArray(actions) || !cJSON_IsArray(hashes)) {
        fail(err, err_size, "%s: missing or malformed key (model, first_frame, prompts, actions, hashes)",
             path);
        goto done;
    }
    t->model = strdup(model->valuestring);
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "model_name")) && cJSON_IsString(v))
        t->model_name = strdup(v->valuestring);
    t->random_weights = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "random_weights"));
    if (!get_u64(root, "seed", &t->seed) || !get_u64(root, "weight_seed", &t->weight_seed)) {
        fail(err, err_size, "%s: missing or malformed seed / weight_seed", path);
        goto done;
    }
    t->action_guidance = -1.0f;
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "action_guidance"))) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble <= WM_MAX_ACTION_GUIDANCE)) {
            fail(err, err_size, "%s: key action_guidance must be a number <= %g", path, WM_MAX_ACTION_GUIDANCE);
            goto done;
        }
        t->action_guidance = (float)v->valuedouble;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "backend")) && cJSON_IsString(v))
        t->backend = strdup(v->valuestring);
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "video")) && cJSON_IsString(v))
        t->video = strdup(v->valuestring);
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "width")) && cJSON_IsNumber(v)) t->width = v->valueint;
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "height")) && cJSON_IsNumber(v)) t->height = v->valueint;
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "fps")) && cJSON_IsNumber(v)) t->fps = v->valuedouble;
    t->first_frame = (int64_t)first->valuedouble;
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, prompts) {
        const cJSON *fr = cJSON_GetObjectItemCaseSensitive(it, "frame");
        const cJSON *tx = cJSON_GetObjectItemCaseSensitive(it, "text");
        const cJSON *em = cJSON_GetObjectItemCaseSensitive(it, "embedding");
        int64_t frame = cJSON_IsNumber(fr) ? (int64_t)fr->valuedouble : -1;
        int okp = 0;
        if (frame >= 0 && (i == 0 ? frame == 0 : frame > t->prompts[t->n_prompts - 1].frame)) {
            if (cJSON_IsString(tx))
                okp = timeline_set_prompt(t, frame, TIMELINE_PROMPT_TEXT, tx->valuestring);
            else if (cJSON_IsString(em))
                okp = timeline_set_prompt(t, frame, TIMELINE_PROMPT_EMBEDDING, em->valuestring);
            else if (cJSON_IsNull(em))
                okp = timeline_set_prompt(t, frame, TIMELINE_PROMPT_ZERO, NULL);
        }
        if (!okp) {
            fail(err, err_size,
                 "%s: prompts[%d]: expected {\"frame\": N, \"text\": ...} with frames increasing from 0",
                 path, i);
            goto done;
        }
        i++;
    }
    if (t->n_prompts == 0) {
        fail(err, err_size, "%s: \"prompts\" is empty (the first entry is the prompt at frame 0)", path);
        goto done;
    }
    const cJSON *accel = cJSON_GetObjectItemCaseSensitive(root, "accel");
    if (accel && !cJSON_IsArray(accel)) {
        fail(err, err_size, "%s: \"accel\" is not an array", path);
        goto done;
    }
    i = 0;
    cJSON_ArrayForEach(it, accel) {
        wm_accel_params a;
        int64_t frame = -1;
        if (!read_accel(it, &frame, &a) ||
            !(i == 0 ? frame >= 0 : frame > t->accels[t->n_accels - 1].frame)) {
            fail(err, err_size,
                 "%s: accel[%d]: expected {\"frame\": N, \"tempcache\": BOOL, \"tc_threshold\": X, ...} "
                 "with every field of wm_accel_params, frames increasing",
                 path, i);
            goto done;
        }
        /* entries are kept as written (timeline_set_accel would drop repeats) */
        if (t->n_accels == t->cap_accels) {
            int cap = t->cap_accels ? 2 * t->cap_accels : 8;
            timeline_accel *na = realloc(t->accels, (size_t)cap * sizeof *na);
            if (!na) {
                fail(err, err_size, "%s: out of memory", path);
                goto done;
            }
            t->accels = na;
            t->cap_accels = cap;
        }
        t->accels[t->n_accels].frame = frame;
        t->accels[t->n_accels++].accel = a;
        i++;
    }
    const int n_act = cJSON_GetArraySize(actions);
    t->action_text = calloc((size_t)n_act + 1, sizeof *t->action_text);
    if (!t->action_text) {
        fail(err, err_size, "%s: out of memory", path);
        goto done;
    }
    i = 0;
    cJSON_ArrayForEach(it, actions) {
        if (!cJSON_IsString(it)) {
            fail(err, err_size, "%s: actions[%d] is not a string", path, i);
            goto done;
        }
        t->action_text[t->n_action_text++] = strdup(it->valuestring);
        i++;
    }
    i = 0;
    cJSON_ArrayForEach(it, hashes) {
        char *end;
        uint64_t h = cJSON_IsString(it) ? strtoull(it->valuestring, &end, 16) : 0;
        if (!cJSON_IsString(it) || end == it->valuestring || *end) {
            fail(err, err_size, "%s: hashes[%d] is not a hex string", path, i);
            goto done;
        }
        if (!timeline_push_hash(t, h)) {
            fail(err, err_size, "%s: out of memory", path);
            goto done;
        }
        i++;
    }
    if (t->n_action_text < t->first_frame + t->n_hashes) {
        fail(err, err_size, "%s: %" PRId64 " actions, the recording needs one per frame up to %" PRId64, path,
             t->n_action_text, t->first_frame + t->n_hashes);
        goto done;
    }
    ok = 1;
done:
    cJSON_Delete(root);
    if (!ok) timeline_free(t);
    return ok;
}

int timeline_bind(timeline *t, const wm_model_info *info, const char *path, char *err, size_t err_size) {
    t->n_actions = 0;
    for (int64_t i = 0; i < t->n_action_text; i++) {
        char where[1200];
        snprintf(where, sizeof where, "%s: actions[%" PRId64 "]", path, i);
        wm_action a;
        if (!action_parse_line(t->action_text[i], info, &a, where, err, err_size)) return 0;
        if (!timeline_push_action(t, &a)) return fail(err, err_size, "%s: out of memory", path);
    }
    free_action_text(t);
    return 1;
}
