/* wm-gamegen - headless data generator: plays the ground-truth game (game.h) with random-walk and
 * scripted policies and writes each episode as a safetensors file that tools/train/ reads.
 *
 *   wm-gamegen --out DIR --episodes N --frames T --seed S --policy random|scripted|mixed --size 256
 *
 * Episode i of a run depends only on (S, i): its world seed, prompt(s) and policy are drawn from a
 * splitmix64 stream seeded with hash(S, i), so --jobs (worker processes) changes nothing but speed.
 * Each file DIR/ep_NNNNNN.safetensors holds
 *   frames  U8  [T, H, W, 3]  frame n rendered after the game stepped with actions[n]
 *   actions F32 [T, 5]        buttons up, down, left, right, torch as 0/1
 *   camera  I64 [T, 2]        world pixel under the top-left pixel (ground-truth camera motion)
 *   look    I32 [T, 3]        biome, time, weather in effect at each frame
 * and metadata: format, prompt (the first), prompts (JSON [[frame, prompt], ...]), seed, policy,
 * width, height, tile_px, fps, buttons. DIR/index.json lists the episodes and the vocabulary.
 * docs/GAME.md has the details.
 */
#include "game.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_SWITCHES 8
#define FORMAT "wm-game-episode/1"

typedef struct options {
    const char *out, *policy;
    int episodes, frames, width, height, jobs, quiet, switch_period, first;
    uint64_t seed;
    double switch_prob, torch_rate;
} options;

typedef struct plan {
    uint64_t world_seed, policy_seed;
    int policy; /* 0 random walk, 1 scripted, 2 mixed segments */
    int n_prompts;
    int switch_frame[MAX_SWITCHES];
    char prompt[MAX_SWITCHES][160];
} plan;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double rand01(uint64_t *s) { return (double)(wm_game_rand(s) >> 11) * (1.0 / 9007199254740992.0); }
static int rand_int(uint64_t *s, int lo, int hi) { return lo + (int)(wm_game_rand(s) % (uint64_t)(hi - lo + 1)); }

static void make_plan(const options *o, int episode, plan *p) {
    uint64_t s = o->seed * 0x9E3779B97F4A7C15ull + (uint64_t)episode * 0xD1B54A32D192ED03ull + 1;
    wm_game_rand(&s);
    memset(p, 0, sizeof *p);
    p->world_seed = wm_game_rand(&s);
    p->policy_seed = wm_game_rand(&s);
    p->policy = !strcmp(o->policy, "random") ? 0 : !strcmp(o->policy, "scripted") ? 1 : 2;
    wm_game_random_prompt(&s, p->prompt[0], sizeof p->prompt[0], NULL);
    p->n_prompts = 1;
    /* prompt switches land on frames 1 + k*switch_period: with time upscale 4 and 3 latent frames per
     * chunk (period 12) that is the first video frame of a chunk, where the engine applies a new prompt */
    if (o->switch_period > 0 && rand01(&s) < o->switch_prob) {
        int slots = (o->frames - 1) / o->switch_period;
        if (slots >= 2) {
            p->switch_frame[1] = 1 + rand_int(&s, 1, slots - 1) * o->switch_period;
            wm_game_random_prompt(&s, p->prompt[1], sizeof p->prompt[1], NULL);
            p->n_prompts = 2;
        }
    }
}

/* ------------------------------------------------------------------------------------------------
 * Policies: a stream of button masks
 * ---------------------------------------------------------------------------------------------- */
enum { UP = WM_GAME_BUTTON_UP, DOWN = WM_GAME_BUTTON_DOWN, LEFT = WM_GAME_BUTTON_LEFT, RIGHT = WM_GAME_BUTTON_RIGHT, TORCH = WM_GAME_BUTTON_TORCH };

typedef struct policy {
    uint64_t rng;
    int kind;        /* 0 random, 1 scripted, 2 mixed */
    uint32_t queue[4096];
    int q_len, q_pos;
    double torch_rate;
} policy;

static void push(policy *p, uint32_t b, int n) {
    for (int i = 0; i < n && p->q_len < (int)(sizeof p->queue / sizeof p->queue[0]); i++) p->queue[p->q_len++] = b;
}

/* Random walk with persistence: a direction (or standing still) held for 4-20 frames (1-5 latent
 * frames). Short holds matter: with longer ones most training frames repeat the previous action and
 * the model learns to continue the visible motion instead of reading the action (tools/train/README.md,
 * "what limits the shipped model"). */
static void segment_random(policy *p) {
    static const uint32_t dirs[9] = {0, UP, DOWN, LEFT, RIGHT, UP | LEFT, UP | RIGHT, DOWN | LEFT, DOWN | RIGHT};
    static const int weights[9] = {12, 15, 15, 15, 15, 7, 7, 7, 7};
    int r = rand_int(&p->rng, 0, 99), d = 0;
    while (r >= weights[d]) r -= weights[d++];
    push(p, dirs[d], rand_int(&p->rng, 4, 20));
}

/* Scripted patterns that come back to where they started, so the model sees places again. */
static void segment_scripted(policy *p) {
    static const uint32_t card[4] = {RIGHT, DOWN, LEFT, UP};
    int kind = rand_int(&p->rng, 0, 3), n = 4 * rand_int(&p->rng, 2, 12), rot = rand_int(&p->rng, 0, 3);
    int cw = rand_int(&p->rng, 0, 1);
    switch (kind) {
    case 0: /* square loop, torch at the start so the return shows it */
        push(p, TORCH, 1);
        for (int k = 0; k < 4; k++) push(p, card[(rot + (cw ? k : 4 - k)) % 4], n);
        break;
    case 1: /* back and forth */
        for (int k = 0; k < rand_int(&p->rng, 1, 3); k++) {
            push(p, card[rot], n);
            push(p, 0, rand_int(&p->rng, 0, 6));
            push(p, card[(rot + 2) % 4], n);
        }
        break;
    case 2: { /* lawnmower: rows joined by short steps, then straight back */
        int rows = rand_int(&p->rng, 2, 4), step = 4 * rand_int(&p->rng, 1, 3);
        for (int k = 0; k < rows; k++) {
            push(p, card[(rot + (k % 2 ? 2 : 0)) % 4], n);
            push(p, card[(rot + 1) % 4], step);
        }
        push(p, card[(rot + 3) % 4], rows * step);
        break;
    }
    default: /* stand, look around, place a torch, walk off and back */
        push(p, 0, rand_int(&p->rng, 4, 16));
        push(p, card[rot], 1);
        push(p, TORCH, 1);
        push(p, card[(rot + 2) % 4], n);
        push(p, card[rot], n);
        break;
    }
}

static uint32_t policy_next(policy *p) {
    if (p->q_pos >= p->q_len) {
        p->q_len = p->q_pos = 0;
        int scripted = p->kind == 1 || (p->kind == 2 && rand_int(&p->rng, 0, 1));
        if (scripted) segment_scripted(p);
        else segment_random(p);
    }
    uint32_t b = p->queue[p->q_pos++];
    if (rand01(&p->rng) < p->torch_rate) b |= TORCH; /* the odd torch anywhere */
    return b;
}

/* ------------------------------------------------------------------------------------------------
 * safetensors writer: header first (sizes are known), then the tensors streamed in order
 * ---------------------------------------------------------------------------------------------- */
static void json_str(char *dst, size_t size, const char *s) {
    size_t n = 0;
    if (n + 1 < size) dst[n++] = '"';
    for (; *s && n + 8 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            dst[n++] = '\\';
            dst[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(dst + n, size - n, "\\u%04x", c);
        } else {
            dst[n++] = (char)c;
        }
    }
    if (n + 1 < size) dst[n++] = '"';
    dst[n] = 0;
}

typedef struct episode_bufs {
    float *actions;  /* [T, 5] */
    int64_t *camera; /* [T, 2] */
    int32_t *look;   /* [T, 3] */
    uint8_t *frame;  /* [H, W, 3] */
} episode_bufs;

static int write_episode(const options *o, int index, const plan *pl, episode_bufs *b) {
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/ep_%06d.safetensors", o->out, index);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    const int T = o->frames, H = o->height, W = o->width;
    const size_t frames_bytes = (size_t)T * H * W * 3, act_bytes = (size_t)T * 5 * 4, cam_bytes = (size_t)T * 2 * 8,
                 look_bytes = (size_t)T * 3 * 4;
    /* metadata strings (escaped twice: once as JSON text inside the value, once as the value) */
    char prompts[2048] = "[", esc[512], esc2[4096], meta[8192];
    size_t pl_len = 1;
    for (int k = 0; k < pl->n_prompts; k++) {
        json_str(esc, sizeof esc, pl->prompt[k]);
        pl_len += (size_t)snprintf(prompts + pl_len, sizeof prompts - pl_len, "%s[%d, %s]", k ? ", " : "", pl->switch_frame[k], esc);
    }
    snprintf(prompts + pl_len, sizeof prompts - pl_len, "]");
    json_str(esc2, sizeof esc2, prompts);
    json_str(esc, sizeof esc, pl->prompt[0]);
    static const char *const policy_names[3] = {"random", "scripted", "mixed"};
    snprintf(meta, sizeof meta,
             "\"__metadata__\":{\"format\":\"" FORMAT "\",\"prompt\":%s,\"prompts\":%s,\"seed\":\"%llu\","
             "\"policy\":\"%s\",\"width\":\"%d\",\"height\":\"%d\",\"tile_px\":\"%d\",\"fps\":\"16\","
             "\"buttons\":\"up,down,left,right,torch\"}",
             esc, esc2, (unsigned long long)pl->world_seed, policy_names[pl->policy], W, H,
             (W < H ? W : H) / WM_GAME_VIEW_TILES);
    char header[12288];
    size_t off = 0;
    int hl = snprintf(header, sizeof header,
                      "{%s,\"actions\":{\"dtype\":\"F32\",\"shape\":[%d,5],\"data_offsets\":[%zu,%zu]},"
                      "\"camera\":{\"dtype\":\"I64\",\"shape\":[%d,2],\"data_offsets\":[%zu,%zu]},"
                      "\"look\":{\"dtype\":\"I32\",\"shape\":[%d,3],\"data_offsets\":[%zu,%zu]},"
                      "\"frames\":{\"dtype\":\"U8\",\"shape\":[%d,%d,%d,3],\"data_offsets\":[%zu,%zu]}}",
                      meta, T, off, off + act_bytes, T, off + act_bytes, off + act_bytes + cam_bytes, T,
                      off + act_bytes + cam_bytes, off + act_bytes + cam_bytes + look_bytes, T, H, W,
                      off + act_bytes + cam_bytes + look_bytes, off + act_bytes + cam_bytes + look_bytes + frames_bytes);
    if (hl < 0 || (size_t)hl + 8 >= sizeof header) return -1;
    while (hl % 8) header[hl++] = ' '; /* 8-byte alignment of the data section */

    /* play: the small tensors come first in the file, so frames are kept in a temp region until then */
    wm_game *g = wm_game_new(pl->world_seed, pl->prompt[0], W, H);
    if (!g) return -1;
    policy pol;
    memset(&pol, 0, sizeof pol);
    pol.rng = pl->policy_seed;
    pol.kind = pl->policy;
    pol.torch_rate = o->torch_rate;
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        wm_game_free(g);
        return -1;
    }
    uint64_t hl64 = (uint64_t)hl;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(hl64 >> (8 * i));
    int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(header, 1, (size_t)hl, f) == (size_t)hl;
    /* reserve the small tensors, stream frames after them, then come back to fill them in */
    long small_at = ftell(f);
    ok = ok && fseek(f, (long)(act_bytes + cam_bytes + look_bytes), SEEK_CUR) == 0;
    int next_prompt = 1;
    for (int t = 0; t < T && ok; t++) {
        if (next_prompt < pl->n_prompts && t == pl->switch_frame[next_prompt]) wm_game_set_prompt(g, pl->prompt[next_prompt++]);
        wm_action a;
        memset(&a, 0, sizeof a);
        a.buttons = policy_next(&pol);
        wm_game_step(g, &a);
        wm_game_render(g, b->frame, (size_t)W * 3);
        wm_game_info info;
        wm_game_get_info(g, &info);
        for (int k = 0; k < 5; k++) b->actions[t * 5 + k] = (float)((a.buttons >> k) & 1);
        b->camera[t * 2] = info.camera_x;
        b->camera[t * 2 + 1] = info.camera_y;
        b->look[t * 3] = info.look.biome;
        b->look[t * 3 + 1] = info.look.time;
        b->look[t * 3 + 2] = info.look.weather;
        ok = fwrite(b->frame, 1, (size_t)H * W * 3, f) == (size_t)H * W * 3;
    }
    ok = ok && fseek(f, small_at, SEEK_SET) == 0 && fwrite(b->actions, 1, act_bytes, f) == act_bytes &&
         fwrite(b->camera, 1, cam_bytes, f) == cam_bytes && fwrite(b->look, 1, look_bytes, f) == look_bytes;
    ok = (fclose(f) == 0) && ok;
    wm_game_free(g);
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return -1;
    }
    return 0;
}

static int write_index(const options *o) {
    char path[4096];
    snprintf(path, sizeof path, "%s/index.json", o->out);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    const char *const *vocab;
    int nv = wm_game_vocab(&vocab);
    fprintf(f, "{\n  \"format\": \"" FORMAT "\",\n  \"width\": %d,\n  \"height\": %d,\n  \"tile_px\": %d,\n  \"fps\": 16,\n",
            o->width, o->height, (o->width < o->height ? o->width : o->height) / WM_GAME_VIEW_TILES);
    fprintf(f, "  \"frames\": %d,\n  \"seed\": %llu,\n  \"policy\": \"%s\",\n", o->frames, (unsigned long long)o->seed, o->policy);
    fprintf(f, "  \"buttons\": [\"up\", \"down\", \"left\", \"right\", \"torch\"],\n  \"attributes\": {");
    for (int a = 0; a < WM_GAME_N_ATTRS; a++) {
        static const char *const names[3] = {"biome", "time", "weather"};
        fprintf(f, "%s\"%s\": [", a ? ", " : "", names[a]);
        for (int v = 0; v < wm_game_n_values(a); v++) fprintf(f, "%s\"%s\"", v ? ", " : "", wm_game_value_name(a, v));
        fprintf(f, "]");
    }
    fprintf(f, "},\n  \"vocab\": [");
    for (int i = 0; i < nv; i++) fprintf(f, "%s\"%s\"", i ? ", " : "", vocab[i]);
    fprintf(f, "],\n  \"episodes\": [\n");
    for (int e = 0; e < o->episodes; e++) {
        plan pl;
        make_plan(o, o->first + e, &pl);
        char esc[512];
        json_str(esc, sizeof esc, pl.prompt[0]);
        fprintf(f, "    {\"file\": \"ep_%06d.safetensors\", \"seed\": %llu, \"prompt\": %s, \"n_prompts\": %d}%s\n", o->first + e,
                (unsigned long long)pl.world_seed, esc, pl.n_prompts, e + 1 < o->episodes ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    return fclose(f) == 0 ? 0 : -1;
}

/* mkdir -p */
static int mkdir_p(const char *path) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char c = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
        buf[i] = c;
    }
    return 0;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: wm-gamegen --out DIR [options]\n"
            "Plays the ground-truth game headless and writes episodes as safetensors.\n\n"
            "  --out DIR            output folder (created)\n"
            "  --episodes N         episodes (default 16)\n"
            "  --first I            index of the first episode (default 0): shards of one run\n"
            "  --frames T           frames per episode (default 129 = 1 + 4*32: whole latent frames)\n"
            "  --seed S             run seed (default 1): episode i depends only on (S, i)\n"
            "  --policy P           random | scripted | mixed (default mixed)\n"
            "  --size S             square frames of S x S (default 256; min(w,h) a multiple of 64)\n"
            "  --width W --height H non-square frames\n"
            "  --switch-prob P      probability that an episode changes its prompt once (default 0.25)\n"
            "  --switch-period K    prompt changes land on frames 1 + j*K (default 12: a chunk of 3 latents x 4)\n"
            "  --torch-rate R       extra torch presses per frame (default 0.01)\n"
            "  --jobs J             worker processes (default 1)\n"
            "  --quiet              no progress on stderr\n"
            "  --print-vocab        print the prompt vocabulary (JSON) and exit\n"
            "  --print-prompts N    print N random prompts of the grammar and exit\n");
}

int main(int argc, char **argv) {
    options o = {NULL, "mixed", 16, 129, 256, 256, 1, 0, 12, 0, 1, 0.25, 0.01};
    int print_vocab = 0, print_prompts = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE                                                      \
    do {                                                                \
        if (!v) {                                                       \
            fprintf(stderr, "wm-gamegen: %s needs a value\n", a);       \
            return 2;                                                   \
        }                                                               \
        i++;                                                            \
    } while (0)
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--out")) { NEED_VALUE; o.out = v;
        } else if (!strcmp(a, "--episodes")) { NEED_VALUE; o.episodes = atoi(v);
        } else if (!strcmp(a, "--first")) { NEED_VALUE; o.first = atoi(v);
        } else if (!strcmp(a, "--frames")) { NEED_VALUE; o.frames = atoi(v);
        } else if (!strcmp(a, "--seed")) { NEED_VALUE; o.seed = strtoull(v, NULL, 0);
        } else if (!strcmp(a, "--policy")) { NEED_VALUE; o.policy = v;
        } else if (!strcmp(a, "--size")) { NEED_VALUE; o.width = o.height = atoi(v);
        } else if (!strcmp(a, "--width")) { NEED_VALUE; o.width = atoi(v);
        } else if (!strcmp(a, "--height")) { NEED_VALUE; o.height = atoi(v);
        } else if (!strcmp(a, "--switch-prob")) { NEED_VALUE; o.switch_prob = atof(v);
        } else if (!strcmp(a, "--switch-period")) { NEED_VALUE; o.switch_period = atoi(v);
        } else if (!strcmp(a, "--torch-rate")) { NEED_VALUE; o.torch_rate = atof(v);
        } else if (!strcmp(a, "--jobs")) { NEED_VALUE; o.jobs = atoi(v);
        } else if (!strcmp(a, "--quiet")) { o.quiet = 1;
        } else if (!strcmp(a, "--print-vocab")) { print_vocab = 1;
        } else if (!strcmp(a, "--print-prompts")) { NEED_VALUE; print_prompts = atoi(v);
        } else {
            fprintf(stderr, "wm-gamegen: unknown option '%s' (--help lists them)\n", a);
            return 2;
        }
#undef NEED_VALUE
    }
    if (print_vocab) {
        const char *const *w;
        int n = wm_game_vocab(&w);
        printf("[");
        for (int k = 0; k < n; k++) printf("%s\"%s\"", k ? ", " : "", w[k]);
        printf("]\n");
        return 0;
    }
    if (print_prompts > 0) {
        uint64_t s = o.seed;
        for (int k = 0; k < print_prompts; k++) {
            char buf[160];
            wm_game_look lk;
            wm_game_random_prompt(&s, buf, sizeof buf, &lk);
            printf("%-60s -> %s %s %s\n", buf, wm_game_value_name(0, lk.biome), wm_game_value_name(1, lk.time),
                   wm_game_value_name(2, lk.weather));
        }
        return 0;
    }
    int m = o.width < o.height ? o.width : o.height;
    if (!o.out || o.episodes < 1 || o.frames < 1 || o.jobs < 1 || o.first < 0 || m < 64 || m % 64 || o.width > 4096 ||
        o.height > 4096 || (strcmp(o.policy, "random") && strcmp(o.policy, "scripted") && strcmp(o.policy, "mixed"))) {
        fprintf(stderr, "wm-gamegen: bad arguments (need --out; episodes, frames, jobs >= 1; min(width, height) a "
                        "multiple of 64 in [64, 4096]; policy random|scripted|mixed)\n");
        usage(stderr);
        return 2;
    }
    if (mkdir_p(o.out) != 0) {
        fprintf(stderr, "wm-gamegen: cannot create %s: %s\n", o.out, strerror(errno));
        return 1;
    }
    if (o.jobs > o.episodes) o.jobs = o.episodes;
    /* progress shared with the workers: episodes and frames done */
    volatile long *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) {
        fprintf(stderr, "wm-gamegen: mmap failed\n");
        return 1;
    }
    shared[0] = shared[1] = shared[2] = 0;
    double t0 = now_s();
    pid_t pids[256];
    int n_workers = o.jobs > 256 ? 256 : o.jobs;
    for (int j = 0; j < n_workers; j++) {
        pid_t pid = n_workers == 1 ? 0 : fork();
        if (pid < 0) {
            fprintf(stderr, "wm-gamegen: fork failed: %s\n", strerror(errno));
            return 1;
        }
        if (pid == 0) {
            episode_bufs b;
            b.actions = malloc(sizeof(float) * 5 * (size_t)o.frames);
            b.camera = malloc(sizeof(int64_t) * 2 * (size_t)o.frames);
            b.look = malloc(sizeof(int32_t) * 3 * (size_t)o.frames);
            b.frame = malloc((size_t)o.width * o.height * 3);
            int fail = !b.actions || !b.camera || !b.look || !b.frame;
            for (int e = j; e < o.episodes && !fail; e += n_workers) {
                plan pl;
                make_plan(&o, o.first + e, &pl);
                if (write_episode(&o, o.first + e, &pl, &b)) {
                    fprintf(stderr, "wm-gamegen: writing episode %d to %s failed\n", o.first + e, o.out);
                    fail = 1;
                    break;
                }
                __atomic_add_fetch(&shared[0], 1, __ATOMIC_SEQ_CST);
                __atomic_add_fetch(&shared[1], o.frames, __ATOMIC_SEQ_CST);
                if (n_workers == 1 && !o.quiet) {
                    double dt = now_s() - t0;
                    fprintf(stderr, "\rwm-gamegen: %ld/%d episodes, %.0f frames/s ", shared[0], o.episodes, (double)shared[1] / dt);
                }
            }
            free(b.actions);
            free(b.camera);
            free(b.look);
            free(b.frame);
            if (fail) __atomic_add_fetch(&shared[2], 1, __ATOMIC_SEQ_CST);
            if (n_workers > 1) _exit(fail ? 1 : 0);
            break;
        }
        pids[j] = pid;
    }
    if (n_workers > 1) {
        int running = n_workers;
        while (running > 0) {
            for (int j = 0; j < n_workers; j++) {
                if (!pids[j]) continue;
                int st;
                pid_t r = waitpid(pids[j], &st, WNOHANG);
                if (r == pids[j]) {
                    pids[j] = 0;
                    running--;
                    if (!WIFEXITED(st) || WEXITSTATUS(st)) shared[2]++;
                }
            }
            if (!o.quiet) {
                double dt = now_s() - t0;
                fprintf(stderr, "\rwm-gamegen: %ld/%d episodes, %.0f frames/s (%d jobs) ", shared[0], o.episodes,
                        (double)shared[1] / (dt > 0 ? dt : 1), n_workers);
            }
            if (running > 0) usleep(200000);
        }
    }
    double dt = now_s() - t0;
    if (!o.quiet)
        fprintf(stderr, "\rwm-gamegen: %ld/%d episodes of %d frames at %dx%d in %.1f s (%.0f frames/s)\n", shared[0],
                o.episodes, o.frames, o.width, o.height, dt, (double)shared[1] / (dt > 0 ? dt : 1));
    if (shared[2]) return 1;
    if (write_index(&o)) {
        fprintf(stderr, "wm-gamegen: cannot write %s/index.json\n", o.out);
        return 1;
    }
    return 0;
}
