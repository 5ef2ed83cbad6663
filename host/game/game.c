/* game.c - the ground-truth game (game.h): world generation, prompt grammar, sprite caches, renderer.
 *
 * Speed comes from caches rebuilt only when the look or the size changes: every ground tile (type x
 * variant x animation phase) and every object sprite is painted once, already darkened by the
 * time-of-day ambient light, so a frame is row copies and masked sprite copies plus, where the look
 * asks for them, three full-screen passes (fog blend, light gain, rain). World generation and the
 * game step use integer arithmetic only; sprite painting uses float, once per look.
 */
#include "game.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define N WM_GAME_WORLD_TILES
#define UPT WM_GAME_UNITS_PER_TILE
#define N_VAR 4           /* appearance variants per tile or object, chosen by the world hash */
#define N_PHASE 4         /* water / lava animation phases, 4 frames each */
#define FOG_PERIOD 512    /* fog texture period in world units (32 tiles) */
#define STATE_MAGIC 0x31474d57u /* "WMG1" */

const char *const wm_game_button_names[WM_GAME_N_BUTTONS] = {"up", "down", "left", "right", "torch"};

/* ------------------------------------------------------------------------------------------------
 * Hashing and noise (integer, so the world is the same on every compiler)
 * ---------------------------------------------------------------------------------------------- */
uint64_t wm_game_rand(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint32_t hash4(uint64_t seed, uint32_t a, uint32_t b, uint32_t c) {
    uint64_t s = seed ^ ((uint64_t)a * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)b * 0xC2B2AE3D27D4EB4Full) ^
                 ((uint64_t)c * 0x165667B19E3779F9ull);
    return (uint32_t)(wm_game_rand(&s) >> 32);
}

/* smoothstep of f/cell in 16-bit fixed point */
static int64_t smooth16(int f, int cell) {
    int64_t t = (int64_t)f * 65536 / cell;
    return t * t / 65536 * (3 * 65536 - 2 * t) / 65536;
}

/* Fractal value noise over a period x period grid, periodic (the world is a torus): octaves with
 * lattice cells of big, big/2, big/4, big/8 units and weights 8, 4, 2, 1, lattice values hashed from
 * the seed, smoothstep interpolation. Writes out[period*period], values 0..65535. */
static int fbm_field(uint64_t seed, int big, int period, uint16_t *out) {
    uint32_t *acc = calloc((size_t)period * period, sizeof *acc);
    uint16_t *lat = malloc(sizeof *lat * (size_t)(period / (big / 8 > 0 ? big / 8 : 1) + 1) * (period / (big / 8 > 0 ? big / 8 : 1) + 1));
    int64_t *sm = malloc(sizeof *sm * (size_t)big);
    if (!acc || !lat || !sm) {
        free(acc);
        free(lat);
        free(sm);
        return -1;
    }
    int wsum = 0;
    for (int cell = big, w = 8; w >= 1 && cell >= 1; cell /= 2, w /= 2) {
        int n = period / cell;
        for (int iy = 0; iy < n; iy++)
            for (int ix = 0; ix < n; ix++) lat[iy * n + ix] = (uint16_t)(hash4(seed, (uint32_t)ix, (uint32_t)iy, (uint32_t)cell) & 0xFFFF);
        for (int f = 0; f < cell; f++) sm[f] = smooth16(f, cell);
        for (int y = 0; y < period; y++) {
            int iy = y / cell, y1 = (iy + 1) % n;
            int64_t sy = sm[y % cell];
            for (int x = 0; x < period; x++) {
                int ix = x / cell, x1 = (ix + 1) % n;
                int64_t sx = sm[x % cell];
                int64_t v00 = lat[iy * n + ix], v10 = lat[iy * n + x1], v01 = lat[y1 * n + ix], v11 = lat[y1 * n + x1];
                int64_t a = v00 + (((v10 - v00) * sx) >> 16), b = v01 + (((v11 - v01) * sx) >> 16);
                acc[y * period + x] += (uint32_t)(w * (a + (((b - a) * sy) >> 16)));
            }
        }
        wsum += w;
    }
    for (int i = 0; i < period * period; i++) out[i] = (uint16_t)(acc[i] / (uint32_t)wsum);
    free(acc);
    free(lat);
    free(sm);
    return 0;
}

/* The value below which `pct` percent of the field lies (fields are 0..65535). */
static int percentile(const uint16_t *field, int n, int pct) {
    static const int bins = 1024;
    int hist[1024] = {0};
    for (int i = 0; i < n; i++) hist[field[i] >> 6]++;
    int64_t want = (int64_t)n * pct / 100, acc = 0;
    for (int b = 0; b < bins; b++) {
        acc += hist[b];
        if (acc >= want) return b << 6;
    }
    return 65535;
}

/* ------------------------------------------------------------------------------------------------
 * Prompt grammar
 * ---------------------------------------------------------------------------------------------- */
typedef struct word_def {
    const char *word;
    int attr, value;
} word_def;

static const word_def k_words[] = {
    {"forest", 0, WM_GAME_FOREST}, {"forests", 0, WM_GAME_FOREST}, {"woods", 0, WM_GAME_FOREST},
    {"woodland", 0, WM_GAME_FOREST}, {"grass", 0, WM_GAME_FOREST}, {"grassy", 0, WM_GAME_FOREST},
    {"grassland", 0, WM_GAME_FOREST}, {"meadow", 0, WM_GAME_FOREST}, {"green", 0, WM_GAME_FOREST},
    {"desert", 0, WM_GAME_DESERT}, {"sand", 0, WM_GAME_DESERT}, {"sandy", 0, WM_GAME_DESERT},
    {"dunes", 0, WM_GAME_DESERT}, {"dune", 0, WM_GAME_DESERT}, {"arid", 0, WM_GAME_DESERT},
    {"dry", 0, WM_GAME_DESERT},
    {"snow", 0, WM_GAME_SNOW}, {"snowy", 0, WM_GAME_SNOW}, {"winter", 0, WM_GAME_SNOW},
    {"ice", 0, WM_GAME_SNOW}, {"icy", 0, WM_GAME_SNOW}, {"frozen", 0, WM_GAME_SNOW},
    {"arctic", 0, WM_GAME_SNOW}, {"tundra", 0, WM_GAME_SNOW},
    {"volcanic", 0, WM_GAME_VOLCANIC}, {"volcano", 0, WM_GAME_VOLCANIC}, {"lava", 0, WM_GAME_VOLCANIC},
    {"magma", 0, WM_GAME_VOLCANIC}, {"ash", 0, WM_GAME_VOLCANIC}, {"ashen", 0, WM_GAME_VOLCANIC},
    {"molten", 0, WM_GAME_VOLCANIC},
    {"day", 1, WM_GAME_DAY}, {"daytime", 1, WM_GAME_DAY}, {"noon", 1, WM_GAME_DAY},
    {"morning", 1, WM_GAME_DAY}, {"daylight", 1, WM_GAME_DAY}, {"bright", 1, WM_GAME_DAY},
    {"midday", 1, WM_GAME_DAY},
    {"dusk", 1, WM_GAME_DUSK}, {"sunset", 1, WM_GAME_DUSK}, {"evening", 1, WM_GAME_DUSK},
    {"twilight", 1, WM_GAME_DUSK}, {"sundown", 1, WM_GAME_DUSK},
    {"night", 1, WM_GAME_NIGHT}, {"nighttime", 1, WM_GAME_NIGHT}, {"midnight", 1, WM_GAME_NIGHT},
    {"dark", 1, WM_GAME_NIGHT}, {"moonlit", 1, WM_GAME_NIGHT}, {"moon", 1, WM_GAME_NIGHT},
    {"clear", 2, WM_GAME_CLEAR}, {"sunny", 2, WM_GAME_CLEAR}, {"calm", 2, WM_GAME_CLEAR},
    {"fair", 2, WM_GAME_CLEAR}, {"cloudless", 2, WM_GAME_CLEAR},
    {"rain", 2, WM_GAME_RAIN}, {"rainy", 2, WM_GAME_RAIN}, {"raining", 2, WM_GAME_RAIN},
    {"storm", 2, WM_GAME_RAIN}, {"stormy", 2, WM_GAME_RAIN}, {"showers", 2, WM_GAME_RAIN},
    {"wet", 2, WM_GAME_RAIN}, {"drizzle", 2, WM_GAME_RAIN},
    {"fog", 2, WM_GAME_FOG}, {"foggy", 2, WM_GAME_FOG}, {"mist", 2, WM_GAME_FOG},
    {"misty", 2, WM_GAME_FOG}, {"haze", 2, WM_GAME_FOG}, {"hazy", 2, WM_GAME_FOG},
    {"murky", 2, WM_GAME_FOG},
};
#define N_WORDS ((int)(sizeof k_words / sizeof k_words[0]))

static const char *const k_fillers[] = {
    "a", "an", "the", "top", "down", "view", "of", "world", "map", "game", "tiles", "pixel", "art", "in",
    "at", "with", "during", "land", "scene", "and", "time", "weather", "biome", "retro", "style",
    "overworld", "explore", "adventure", "place", "some", "very", "little",
};
#define N_FILLERS ((int)(sizeof k_fillers / sizeof k_fillers[0]))

/* Words outside the vocabulary: the generator mixes them in so the model learns to ignore <unk>. */
static const char *const k_distractors[] = {
    "castle", "hero", "blue", "red", "dragon", "river", "city", "mountain", "ocean", "cozy", "epic",
    "quiet", "beautiful", "colorful", "ancient", "magic",
};
#define N_DISTRACTORS ((int)(sizeof k_distractors / sizeof k_distractors[0]))

static const char *const k_value_names[WM_GAME_N_ATTRS][4] = {
    {"forest", "desert", "snow", "volcanic"}, {"day", "dusk", "night", NULL}, {"clear", "rain", "fog", NULL}};
static const int k_n_values[WM_GAME_N_ATTRS] = {WM_GAME_N_BIOMES, WM_GAME_N_TIMES, WM_GAME_N_WEATHERS};

int wm_game_n_values(int attr) { return attr >= 0 && attr < WM_GAME_N_ATTRS ? k_n_values[attr] : 0; }

const char *wm_game_value_name(int attr, int value) {
    if (attr < 0 || attr >= WM_GAME_N_ATTRS || value < 0 || value >= k_n_values[attr]) return NULL;
    return k_value_names[attr][value];
}

int wm_game_vocab(const char *const **words) {
    static const char *list[N_WORDS + N_FILLERS];
    static int n = 0;
    if (!n) { /* grammar words first, then fillers; the tables hold no duplicates */
        for (int i = 0; i < N_WORDS; i++) list[n++] = k_words[i].word;
        for (int i = 0; i < N_FILLERS; i++) list[n++] = k_fillers[i];
    }
    if (words) *words = list;
    return n;
}

int wm_game_parse_prompt(const char *prompt, wm_game_look *look) {
    look->biome = WM_GAME_FOREST;
    look->time = WM_GAME_DAY;
    look->weather = WM_GAME_CLEAR;
    int recognised = 0;
    if (!prompt) return 0;
    const char *p = prompt;
    while (*p) {
        char word[32];
        size_t len = 0;
        while (*p) { /* the engine's tokenizer: ASCII lower-case, every other byte outside [a-z0-9] separates */
            char c = *p;
            if (c >= 'A' && c <= 'Z') c = (char)(c + 32);
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) break;
            if (len + 1 < sizeof word) word[len] = c;
            len++;
            p++;
        }
        if (len == 0) {
            p++;
            continue;
        }
        if (len >= sizeof word) continue; /* longer than any grammar word */
        word[len] = 0;
        for (int i = 0; i < N_WORDS; i++) {
            if (strcmp(word, k_words[i].word)) continue;
            int *slot = k_words[i].attr == 0 ? &look->biome : k_words[i].attr == 1 ? &look->time : &look->weather;
            *slot = k_words[i].value;
            recognised++;
            break;
        }
    }
    return recognised;
}

size_t wm_game_random_prompt(uint64_t *rng, char *buf, size_t size, wm_game_look *look) {
    const char *words[16];
    int n = 0;
    wm_game_look lk = {WM_GAME_FOREST, WM_GAME_DAY, WM_GAME_CLEAR};
    for (int attr = 0; attr < WM_GAME_N_ATTRS; attr++) {
        if (wm_game_rand(rng) % 10 >= 8) continue; /* unnamed: the default */
        int value = (int)(wm_game_rand(rng) % (uint64_t)k_n_values[attr]);
        int n_syn = 0;
        for (int i = 0; i < N_WORDS; i++) n_syn += k_words[i].attr == attr && k_words[i].value == value;
        int pick = (int)(wm_game_rand(rng) % (uint64_t)n_syn);
        for (int i = 0; i < N_WORDS; i++)
            if (k_words[i].attr == attr && k_words[i].value == value && pick-- == 0) words[n++] = k_words[i].word;
        *(attr == 0 ? &lk.biome : attr == 1 ? &lk.time : &lk.weather) = value;
    }
    int n_fill = (int)(wm_game_rand(rng) % 5);
    for (int i = 0; i < n_fill; i++) words[n++] = k_fillers[wm_game_rand(rng) % N_FILLERS];
    if (wm_game_rand(rng) % 5 == 0) words[n++] = k_distractors[wm_game_rand(rng) % N_DISTRACTORS];
    for (int i = n - 1; i > 0; i--) { /* Fisher-Yates */
        int j = (int)(wm_game_rand(rng) % (uint64_t)(i + 1));
        const char *t = words[i];
        words[i] = words[j];
        words[j] = t;
    }
    int capital = wm_game_rand(rng) % 4 == 0, commas = wm_game_rand(rng) % 5 == 0;
    size_t len = 0;
    if (size) buf[0] = 0;
    for (int i = 0; i < n && size; i++) {
        const char *sep = i == 0 ? "" : (commas && wm_game_rand(rng) % 2) ? ", " : " ";
        for (const char *s = sep; *s && len + 1 < size; s++) buf[len++] = *s;
        for (const char *s = words[i]; *s && len + 1 < size; s++)
            buf[len++] = (char)((capital && s == words[i] && i == 0 && *s >= 'a' && *s <= 'z') ? *s - 32 : *s);
        buf[len] = 0;
    }
    if (look) *look = lk;
    return len;
}

/* ------------------------------------------------------------------------------------------------
 * World
 * ---------------------------------------------------------------------------------------------- */
enum ground { G_WATER = 0, G_SAND, G_GROUND, G_LUSH, G_PATH, G_N };
enum object {
    O_NONE = 0, O_TREE, O_ROCK, O_BUSH, O_FLOWER, O_TORCH,
    O_HOUSE = 8,    /* 3 x 2 tiles: parts 0-2 roof row, 3-5 wall row (door in the middle) */
    O_TOWER = 14,   /* 2 x 2: parts 0-1 battlements (flag on part 1), 2-3 wall */
    O_OBELISK = 18, /* 1 x 1, tall, glowing rune */
    O_WELL = 19,
    O_RUIN = 20,    /* stone blocks of a ring of 5 x 5 tiles */
    O_N = 21
};

typedef struct rgb8 {
    uint8_t r, g, b;
} rgb8;

typedef struct sprite { /* TS wide, 2*TS tall (the object's tile is the lower half), binary alpha */
    uint8_t *rgb, *a;
    int top; /* first row with an opaque pixel (h when empty) */
} sprite;

struct wm_game {
    uint64_t seed;
    int w, h, ts;
    wm_game_look look;
    /* dynamic state (saved) */
    int64_t frame, px, py; /* player centre in world units */
    int facing, walk, n_torches;
    /* world: ground type, object code, appearance variant per tile */
    uint8_t ground[N * N], obj[N * N], var[N * N];
    /* caches for `cached` look (valid when cache_ok) */
    int cache_ok;
    wm_game_look cached;
    uint8_t *ground_rgb; /* [G_N][N_VAR][N_PHASE][ts*ts*3] */
    sprite objs[O_N][N_VAR];
    sprite player[4][2]; /* facing x walk frame */
    uint8_t *mem;        /* one block for all sprites */
    uint8_t *torch_lamp, *lantern; /* light stamps, (2r+1)^2 */
    int torch_r, lantern_r;
    uint16_t gain[3][256]; /* 8.8 fixed light gain per channel and light level */
    uint8_t fog[FOG_PERIOD * FOG_PERIOD];
    rgb8 fog_col, rain_col;
    uint8_t *rain;  /* w*h streak mask, scrolled per frame */
    uint32_t *rain_pts; /* the mask's set pixels (y*w + x), n_rain of them */
    int n_rain;
    int lx0, ly0, lx1, ly1; /* bounding box of this frame's light stamps */
    int rain_dx, rain_dy, rain_blend;
    uint8_t *light; /* w*h light level of this frame */
    int *fog_x;       /* w fog texture columns of this frame */
    uint8_t *fog_row; /* 6*w: a row's fog density and colour per byte */
    float amb[3];
};

static int widx(int64_t tx, int64_t ty) {
    int x = (int)(((tx % N) + N) % N), y = (int)(((ty % N) + N) % N);
    return y * N + x;
}

static int land(uint8_t gt) { return gt == G_GROUND || gt == G_LUSH || gt == G_PATH; }

static void place_landmark(wm_game *g, int cx, int cy) {
    uint32_t r = hash4(g->seed, (uint32_t)cx, (uint32_t)cy, 77);
    if (r % 100 >= 60) return;
    int type = (int)((r / 100) % 5), fw, fh;
    static const int fp[5][2] = {{3, 2}, {2, 2}, {1, 1}, {1, 1}, {5, 5}};
    fw = fp[type][0];
    fh = fp[type][1];
    int x0 = cx * 16 + 2 + (int)((r >> 8) % (uint32_t)(12 - fw)), y0 = cy * 16 + 2 + (int)((r >> 12) % (uint32_t)(12 - fh));
    uint8_t v = (uint8_t)((r >> 20) % N_VAR);
    for (int y = -1; y <= fh; y++)
        for (int x = -1; x <= fw; x++)
            if (!land(g->ground[widx(x0 + x, y0 + y)])) return;
    for (int y = -1; y <= fh; y++)
        for (int x = -1; x <= fw; x++) {
            g->obj[widx(x0 + x, y0 + y)] = O_NONE;
            g->var[widx(x0 + x, y0 + y)] = v;
        }
    switch (type) {
    case 0: /* house */
        for (int y = 0; y < 2; y++)
            for (int x = 0; x < 3; x++) g->obj[widx(x0 + x, y0 + y)] = (uint8_t)(O_HOUSE + y * 3 + x);
        break;
    case 1: /* tower */
        for (int y = 0; y < 2; y++)
            for (int x = 0; x < 2; x++) g->obj[widx(x0 + x, y0 + y)] = (uint8_t)(O_TOWER + y * 2 + x);
        break;
    case 2: g->obj[widx(x0, y0)] = O_OBELISK; break;
    case 3: g->obj[widx(x0, y0)] = O_WELL; break;
    default: /* ring of ruined blocks around an obelisk */
        for (int y = 0; y < 5; y++)
            for (int x = 0; x < 5; x++) {
                int ring = x == 0 || y == 0 || x == 4 || y == 4;
                if (ring && hash4(g->seed, (uint32_t)(x0 + x), (uint32_t)(y0 + y), 78) % 4 != 0)
                    g->obj[widx(x0 + x, y0 + y)] = O_RUIN;
            }
        g->obj[widx(x0 + 2, y0 + 2)] = O_OBELISK;
        break;
    }
}

static void generate_world(wm_game *g) {
    uint16_t *elev = malloc(sizeof(uint16_t) * N * N * 3);
    if (!elev) { /* fall back to flat grass: still deterministic */
        memset(g->ground, G_GROUND, sizeof g->ground);
        return;
    }
    uint16_t *moist = elev + N * N, *paths = elev + 2 * N * N;
    if (fbm_field(g->seed ^ 0xE1E7, 32, N, elev) || fbm_field(g->seed ^ 0x3015, 32, N, moist) ||
        fbm_field(g->seed ^ 0x9A75, 64, N, paths)) {
        free(elev);
        memset(g->ground, G_GROUND, sizeof g->ground);
        return;
    }
    int water = percentile(elev, N * N, 20), shore = percentile(elev, N * N, 25), hills = percentile(elev, N * N, 88);
    int lush = percentile(moist, N * N, 62), p_lo = percentile(paths, N * N, 48), p_hi = percentile(paths, N * N, 51);
    for (int i = 0; i < N * N; i++) {
        int x = i % N, y = i / N;
        uint32_t h = hash4(g->seed, (uint32_t)x, (uint32_t)y, 1);
        g->var[i] = (uint8_t)(h % N_VAR);
        uint8_t gt = elev[i] < water ? G_WATER : elev[i] < shore ? G_SAND : moist[i] >= lush ? G_LUSH : G_GROUND;
        if (land(gt) && paths[i] >= p_lo && paths[i] < p_hi) gt = G_PATH;
        g->ground[i] = gt;
        uint8_t o = O_NONE;
        if (gt == G_GROUND || gt == G_LUSH) {
            /* forests where it is moist, rocky where it is high, a little of everything elsewhere */
            int mp = (int)((int64_t)moist[i] * 100 / 65536), tree_pct = mp > 50 ? (mp - 50) * 2 : 2;
            int roll = (int)((h >> 8) % 1000);
            if (elev[i] >= hills && roll < 200) o = O_ROCK;
            else if (roll < tree_pct * 10) o = O_TREE;
            else if (roll < tree_pct * 10 + 15) o = O_ROCK;
            else if (roll < tree_pct * 10 + 45) o = O_BUSH;
            else if (roll < tree_pct * 10 + 85) o = O_FLOWER;
        } else if (gt == G_SAND && (h >> 8) % 100 < 3) {
            o = O_ROCK;
        }
        g->obj[i] = o;
    }
    for (int cy = 0; cy < N / 16; cy++)
        for (int cx = 0; cx < N / 16; cx++) place_landmark(g, cx, cy);
    free(elev);
}

/* ------------------------------------------------------------------------------------------------
 * Palettes and painters (resolution independent: u, v in tile units, art on a 16 x 16 grid)
 * ---------------------------------------------------------------------------------------------- */
typedef struct palette {
    rgb8 ground[3], lush[3], sand[3], water[3], path[3];
    rgb8 trunk, leaf[3], rock[3], bush[3], flower[4], wall, stone[3];
    int water_anim, water_emissive;
} palette;

#define C(r, g, b) {r, g, b}
static const palette k_pal[WM_GAME_N_BIOMES] = {
    /* forest */
    {{C(78, 142, 62), C(62, 120, 50), C(104, 168, 78)}, {C(56, 118, 48), C(44, 98, 40), C(80, 146, 60)},
     {C(216, 198, 142), C(196, 176, 120), C(232, 218, 170)}, {C(52, 102, 190), C(40, 84, 166), C(124, 172, 232)},
     {C(152, 118, 78), C(128, 98, 62), C(172, 140, 98)}, C(102, 70, 40), {C(36, 104, 42), C(24, 80, 32), C(64, 140, 60)},
     {C(130, 130, 134), C(94, 94, 100), C(170, 170, 172)}, {C(46, 124, 46), C(32, 98, 36), C(196, 40, 48)},
     {C(226, 52, 60), C(246, 214, 60), C(244, 244, 244), C(156, 90, 206)}, C(164, 122, 80),
     {C(140, 138, 134), C(104, 102, 100), C(176, 174, 168)}, 1, 0},
    /* desert */
    {{C(224, 192, 124), C(206, 172, 104), C(238, 212, 150)}, {C(204, 166, 98), C(186, 146, 82), C(220, 186, 120)},
     {C(238, 218, 166), C(222, 200, 146), C(248, 232, 190)}, {C(40, 162, 172), C(30, 132, 148), C(120, 214, 214)},
     {C(172, 112, 72), C(150, 94, 58), C(192, 134, 92)}, C(120, 84, 50), {C(66, 142, 72), C(48, 112, 56), C(104, 178, 100)},
     {C(192, 112, 72), C(156, 84, 52), C(222, 146, 100)}, {C(150, 118, 62), C(120, 92, 46), C(176, 148, 90)},
     {C(246, 240, 226), C(210, 200, 180), C(236, 150, 60), C(200, 80, 60)}, C(204, 152, 102),
     {C(200, 170, 120), C(170, 140, 96), C(226, 198, 150)}, 1, 0},
    /* snow */
    {{C(234, 240, 246), C(208, 220, 236), C(250, 252, 255)}, {C(214, 226, 242), C(190, 206, 228), C(234, 242, 252)},
     {C(190, 200, 212), C(170, 182, 198), C(210, 218, 228)}, {C(170, 212, 236), C(140, 188, 222), C(236, 248, 255)},
     {C(182, 176, 172), C(160, 154, 150), C(204, 198, 194)}, C(92, 66, 44), {C(30, 82, 62), C(20, 62, 48), C(246, 250, 255)},
     {C(102, 106, 118), C(76, 80, 92), C(246, 250, 255)}, {C(60, 110, 90), C(40, 86, 70), C(246, 250, 255)},
     {C(120, 190, 240), C(170, 220, 250), C(90, 150, 220), C(246, 250, 255)}, C(120, 90, 60),
     {C(120, 124, 134), C(92, 96, 106), C(246, 250, 255)}, 0, 0},
    /* volcanic */
    {{C(62, 56, 56), C(48, 42, 44), C(82, 74, 72)}, {C(46, 40, 42), C(34, 30, 32), C(110, 48, 34)},
     {C(112, 106, 100), C(92, 86, 82), C(132, 126, 120)}, {C(232, 92, 22), C(196, 52, 16), C(255, 196, 60)},
     {C(92, 70, 60), C(74, 56, 48), C(112, 88, 74)}, C(40, 30, 26), {C(40, 30, 26), C(24, 18, 16), C(240, 110, 30)},
     {C(34, 28, 40), C(20, 16, 26), C(110, 96, 140)}, {C(210, 70, 30), C(150, 40, 20), C(255, 170, 60)},
     {C(255, 120, 40), C(255, 200, 80), C(200, 60, 30), C(120, 110, 100)}, C(80, 80, 92),
     {C(70, 64, 66), C(50, 46, 48), C(96, 90, 90)}, 1, 1},
};
static const rgb8 k_roof[N_VAR] = {C(172, 52, 42), C(52, 82, 164), C(62, 132, 62), C(124, 62, 144)};
static const rgb8 k_rune[N_VAR] = {C(80, 220, 255), C(255, 90, 200), C(120, 255, 120), C(255, 220, 80)};
#undef C

/* painter result: alpha, colour, emissive (not darkened by the ambient light) */
typedef struct paint {
    int a, emissive;
    rgb8 c;
} paint;

static uint32_t grid_hash(int gx, int gy, uint32_t k) { return hash4(0x5EED, (uint32_t)gx, (uint32_t)gy, k); }

static int in_ellipse(float u, float v, float cx, float cy, float rx, float ry) {
    float dx = (u - cx) / rx, dy = (v - cy) / ry;
    return dx * dx + dy * dy < 1.0f;
}
static int in_rect(float u, float v, float x0, float y0, float x1, float y1) { return u >= x0 && u < x1 && v >= y0 && v < y1; }
static float seg_dist(float u, float v, float x0, float y0, float x1, float y1) {
    float dx = x1 - x0, dy = y1 - y0, t = ((u - x0) * dx + (v - y0) * dy) / (dx * dx + dy * dy);
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    float ex = x0 + t * dx - u, ey = y0 + t * dy - v;
    return sqrtf(ex * ex + ey * ey);
}

/* Ground tile pixel. gx, gy: 16-grid cell of the pixel in its tile. */
static rgb8 paint_ground(const palette *p, int type, int var, int phase, int gx, int gy, int *emissive) {
    uint32_t h = grid_hash(gx, gy, (uint32_t)(type * 16 + var));
    *emissive = 0;
    switch (type) {
    case G_WATER: {
        *emissive = p->water_emissive;
        if (!p->water_anim) { /* ice: still, with cracks */
            int crack = ((gx + gy * 3 + var * 5) % 11 == 0) || ((gx * 2 - gy + var * 7 + 32) % 13 == 0);
            return crack ? p->water[2] : (h % 9 == 0 ? p->water[1] : p->water[0]);
        }
        int wave = ((gx + phase * 4 + ((gy / 4) % 2) * 8 + var * 3) % 16) < 3 && gy % 4 == var % 4;
        return wave ? p->water[2] : (h % 11 == 0 ? p->water[1] : p->water[0]);
    }
    case G_SAND: return h % 7 == 0 ? p->sand[1] : h % 13 == 0 ? p->sand[2] : p->sand[0];
    case G_LUSH: return h % 5 == 0 ? p->lush[1] : h % 17 == 0 ? p->lush[2] : p->lush[0];
    case G_PATH: return h % 6 == 0 ? p->path[1] : h % 15 == 0 ? p->path[2] : p->path[0];
    default: { /* plain ground with a few darker tufts in a per-variant pattern */
        int tuft = (gx + var * 5) % 8 == 3 && (gy + var * 3) % 7 == 2;
        return tuft ? p->ground[1] : h % 9 == 0 ? p->ground[1] : h % 19 == 0 ? p->ground[2] : p->ground[0];
    }
    }
}

static paint paint_tree(const palette *p, int biome, float u, float v, int gx, int gy) {
    paint o = {0, 0, {0, 0, 0}};
    uint32_t h = grid_hash(gx, gy, 900);
    switch (biome) {
    case WM_GAME_DESERT: /* saguaro */
        if (in_rect(u, v, 0.40f, -0.45f, 0.60f, 0.95f) || in_ellipse(u, v, 0.5f, -0.45f, 0.10f, 0.10f) ||
            in_rect(u, v, 0.18f, 0.22f, 0.42f, 0.34f) || in_rect(u, v, 0.18f, -0.10f, 0.30f, 0.30f) ||
            in_rect(u, v, 0.58f, 0.02f, 0.82f, 0.14f) || in_rect(u, v, 0.70f, -0.28f, 0.82f, 0.10f)) {
            o.a = 1;
            o.c = (gx % 3 == 0) ? p->leaf[2] : (u > 0.5f ? p->leaf[1] : p->leaf[0]);
        }
        break;
    case WM_GAME_SNOW: { /* snowy pine: three tiers, snow on each tier's upper edge */
        static const float tiers[3][3] = {{-0.70f, -0.10f, 0.28f}, {-0.40f, 0.30f, 0.40f}, {-0.05f, 0.70f, 0.48f}};
        if (in_rect(u, v, 0.44f, 0.65f, 0.56f, 0.95f)) {
            o.a = 1;
            o.c = p->trunk;
        }
        for (int t = 0; t < 3; t++) {
            float top = tiers[t][0], bot = tiers[t][1], hw = tiers[t][2] * (v - top) / (bot - top);
            if (v >= top && v < bot && fabsf(u - 0.5f) < hw) {
                o.a = 1;
                int snow = (v - top) < 0.12f + 0.05f * (float)(h % 3) || h % 7 == 0;
                o.c = snow ? p->leaf[2] : (u < 0.5f ? p->leaf[0] : p->leaf[1]);
            }
        }
        break;
    }
    case WM_GAME_VOLCANIC: /* dead, charred tree with a few embers */
        if (in_rect(u, v, 0.45f, -0.30f, 0.56f, 0.95f) || seg_dist(u, v, 0.5f, 0.10f, 0.18f, -0.22f) < 0.05f ||
            seg_dist(u, v, 0.5f, -0.05f, 0.84f, -0.40f) < 0.05f || seg_dist(u, v, 0.5f, 0.35f, 0.78f, 0.12f) < 0.045f) {
            o.a = 1;
            o.c = h % 13 == 0 ? p->leaf[2] : (u < 0.5f ? p->leaf[0] : p->leaf[1]);
            o.emissive = h % 13 == 0;
        }
        break;
    default: /* round broadleaf */
        if (in_rect(u, v, 0.42f, 0.40f, 0.58f, 0.95f)) {
            o.a = 1;
            o.c = p->trunk;
        }
        if (in_ellipse(u, v, 0.5f, 0.02f, 0.46f, 0.46f) || in_ellipse(u, v, 0.30f, 0.26f, 0.26f, 0.22f) ||
            in_ellipse(u, v, 0.70f, 0.26f, 0.26f, 0.22f)) {
            o.a = 1;
            float lit = (0.35f - u) + (-0.15f - v);
            o.c = h % 6 == 0 ? p->leaf[1] : lit > 0.1f ? p->leaf[2] : (u + v > 0.9f ? p->leaf[1] : p->leaf[0]);
        }
        break;
    }
    return o;
}

static paint paint_object(const palette *p, int biome, int code, int var, float u, float v, int gx, int gy) {
    paint o = {0, 0, {0, 0, 0}};
    uint32_t h = grid_hash(gx, gy, (uint32_t)(code * 8 + var));
    switch (code) {
    case O_TREE: return paint_tree(p, biome, u, v, gx, gy);
    case O_ROCK:
        if (in_ellipse(u, v, 0.5f, 0.62f, 0.38f, 0.30f)) {
            o.a = 1;
            float lit = (0.45f - u) + (0.50f - v);
            o.c = (biome == WM_GAME_SNOW && v < 0.50f) ? p->rock[2] : lit > 0.15f ? p->rock[2] : lit < -0.2f ? p->rock[1] : p->rock[0];
            if (biome == WM_GAME_VOLCANIC && lit > 0.25f) o.c = p->rock[2];
        }
        break;
    case O_BUSH:
        if (in_ellipse(u, v, 0.5f, 0.66f, 0.28f, 0.22f) || in_ellipse(u, v, 0.32f, 0.74f, 0.16f, 0.14f) ||
            in_ellipse(u, v, 0.68f, 0.74f, 0.16f, 0.14f)) {
            o.a = biome == WM_GAME_DESERT ? (gx + gy) % 2 == 0 || h % 3 == 0 : 1; /* dry shrub: sparse */
            o.c = h % 7 == 0 ? p->bush[2] : v < 0.62f ? p->bush[0] : p->bush[1];
            o.emissive = biome == WM_GAME_VOLCANIC && h % 7 == 0;
        }
        break;
    case O_FLOWER: {
        static const float spots[3][2] = {{0.28f, 0.40f}, {0.66f, 0.55f}, {0.38f, 0.78f}};
        for (int i = 0; i < 3; i++) {
            float cx = spots[(i + var) % 3][0], cy = spots[(i + var) % 3][1];
            if (in_ellipse(u, v, cx, cy, 0.09f, 0.09f)) {
                o.a = 1;
                o.c = in_ellipse(u, v, cx, cy, 0.04f, 0.04f) ? p->flower[1] : p->flower[(var + i) % 4 == 1 ? 0 : (var + i) % 4];
            }
        }
        break;
    }
    case O_TORCH:
        if (in_rect(u, v, 0.45f, 0.36f, 0.55f, 0.95f)) {
            o.a = 1;
            o.c = (rgb8){110, 78, 40};
        }
        if (in_ellipse(u, v, 0.5f, 0.22f, 0.15f, 0.21f)) {
            o.a = o.emissive = 1;
            o.c = in_ellipse(u, v, 0.5f, 0.27f, 0.07f, 0.11f) ? (rgb8){255, 236, 120} : (rgb8){255, 130, 30};
        }
        break;
    case O_OBELISK: {
        float hw = 0.13f + 0.10f * (v + 0.85f) / 1.8f;
        if (v >= -0.85f && v < 0.92f && fabsf(u - 0.5f) < hw) {
            o.a = 1;
            o.c = u < 0.5f ? p->stone[2] : p->stone[1];
            if (in_rect(u, v, 0.44f, -0.35f, 0.56f, 0.15f) && (gy % 3 != 0)) {
                o.c = k_rune[var];
                o.emissive = 1;
            }
        } else if (in_rect(u, v, 0.18f, 0.80f, 0.82f, 0.96f)) {
            o.a = 1;
            o.c = p->stone[0];
        }
        break;
    }
    case O_WELL:
        if (in_ellipse(u, v, 0.5f, 0.6f, 0.40f, 0.34f)) {
            o.a = 1;
            o.c = in_ellipse(u, v, 0.5f, 0.6f, 0.25f, 0.20f) ? p->water[0] : ((gx + gy) % 3 == 0 ? p->stone[1] : p->stone[0]);
            o.emissive = p->water_emissive && in_ellipse(u, v, 0.5f, 0.6f, 0.25f, 0.20f);
        }
        if (in_rect(u, v, 0.14f, -0.2f, 0.22f, 0.5f) || in_rect(u, v, 0.78f, -0.2f, 0.86f, 0.5f)) {
            o.a = 1;
            o.c = p->trunk;
        }
        if (in_rect(u, v, 0.08f, -0.34f, 0.92f, -0.16f)) {
            o.a = 1;
            o.c = k_roof[var];
        }
        break;
    case O_RUIN:
        if (in_rect(u, v, 0.08f, 0.18f, 0.92f, 0.92f) && !(u > 0.6f && v < 0.4f && var % 2)) {
            o.a = 1;
            int crack = fabsf((u - 0.3f) * 2.0f - (v - 0.2f)) < 0.05f;
            o.c = crack ? p->stone[1] : (gy % 4 == 0 ? p->stone[1] : v < 0.35f ? p->stone[2] : p->stone[0]);
            if (biome == WM_GAME_FOREST && h % 5 == 0) o.c = p->lush[1]; /* moss */
        }
        break;
    default:
        if (code >= O_HOUSE && code < O_HOUSE + 6) {
            int part = code - O_HOUSE, col = part % 3;
            if (part < 3) { /* roof row, ridge overhanging into the tile above */
                float top = 0.55f - (col == 1 ? 0.9f : 0.55f);
                if (col == 0) top = 0.55f - 0.55f * u * 1.6f;
                if (col == 2) top = 0.55f - 0.55f * (1.0f - u) * 1.6f;
                if (top < -0.35f) top = -0.35f;
                if (v >= top && (col != 0 || u > 0.06f) && (col != 2 || u < 0.94f)) {
                    o.a = 1;
                    rgb8 r = k_roof[var];
                    int line = gy % 4 == 0 || v > 0.9f;
                    o.c = line ? (rgb8){(uint8_t)(r.r * 3 / 4), (uint8_t)(r.g * 3 / 4), (uint8_t)(r.b * 3 / 4)} : r;
                    if (biome == WM_GAME_SNOW && v < top + 0.3f) o.c = p->ground[2];
                }
            } else if ((col != 0 || u > 0.06f) && (col != 2 || u < 0.94f) && v < 0.96f) {
                o.a = 1;
                o.c = gy % 5 == 4 ? p->stone[1] : p->wall;
                if (col == 1 && in_rect(u, v, 0.30f, 0.35f, 0.70f, 0.96f)) o.c = (rgb8){84, 52, 30};  /* door */
                if (col != 1 && in_rect(u, v, 0.30f, 0.25f, 0.70f, 0.60f)) {                          /* window */
                    o.c = (rgb8){250, 210, 110};
                    o.emissive = 1;
                }
            }
        } else if (code >= O_TOWER && code < O_TOWER + 4) {
            int part = code - O_TOWER, col = part % 2;
            float x0 = col == 0 ? 0.10f : 0.0f, x1 = col == 0 ? 1.0f : 0.90f;
            if (part < 2) {
                int merlon = ((gx / 3) % 2 == 0);
                if (in_rect(u, v, x0, merlon ? -0.40f : -0.22f, x1, 1.0f)) {
                    o.a = 1;
                    o.c = v < -0.05f ? p->stone[2] : ((gy % 4 == 0 || (gx + (gy / 4) * 4) % 8 == 0) ? p->stone[1] : p->stone[0]);
                }
                if (col == 1 && in_rect(u, v, 0.55f, -0.95f, 0.60f, -0.40f)) {
                    o.a = 1;
                    o.c = p->trunk;
                }
                if (col == 1 && in_rect(u, v, 0.60f, -0.95f, 0.92f, -0.72f)) {
                    o.a = 1;
                    o.c = k_roof[var];
                }
            } else if (in_rect(u, v, x0, 0.0f, x1, 0.96f)) {
                o.a = 1;
                o.c = (gy % 4 == 0 || (gx + (gy / 4) * 4) % 8 == 0) ? p->stone[1] : p->stone[0];
                if (col == 0 && in_rect(u, v, 0.55f, 0.45f, 1.0f, 0.96f)) o.c = (rgb8){40, 30, 26};
                if (col == 1 && in_rect(u, v, 0.25f, 0.25f, 0.45f, 0.55f)) {
                    o.c = (rgb8){250, 210, 110};
                    o.emissive = 1;
                }
            }
        }
        break;
    }
    return o;
}

static paint paint_player(int facing, int step, float u, float v, int gx, int gy) {
    paint o = {0, 0, {0, 0, 0}};
    (void)gx;
    (void)gy;
    const rgb8 skin = {240, 200, 160}, hair = {70, 44, 24}, tunic = {204, 40, 44}, belt = {90, 56, 30},
               legs = {50, 60, 110}, eye = {20, 20, 30};
    /* legs: one steps forward every other walk frame */
    float l_end = step ? 0.90f : 0.98f, r_end = step ? 0.98f : 0.90f;
    if (in_rect(u, v, 0.34f, 0.74f, 0.47f, l_end) || in_rect(u, v, 0.53f, 0.74f, 0.66f, r_end)) {
        o.a = 1;
        o.c = legs;
    }
    if (in_rect(u, v, 0.28f, 0.42f, 0.72f, 0.78f)) {
        o.a = 1;
        o.c = in_rect(u, v, 0.28f, 0.64f, 0.72f, 0.70f) ? belt : tunic;
    }
    if (in_rect(u, v, 0.18f, 0.46f, 0.28f, 0.70f) || in_rect(u, v, 0.72f, 0.46f, 0.82f, 0.70f)) { /* arms */
        o.a = 1;
        o.c = skin;
    }
    if (in_ellipse(u, v, 0.5f, 0.26f, 0.22f, 0.20f)) {
        o.a = 1;
        o.c = skin;
        switch (facing) {
        case WM_GAME_FACE_UP: o.c = hair; break;
        case WM_GAME_FACE_DOWN:
            if (v < 0.18f) o.c = hair;
            if (in_ellipse(u, v, 0.41f, 0.28f, 0.045f, 0.05f) || in_ellipse(u, v, 0.59f, 0.28f, 0.045f, 0.05f)) o.c = eye;
            break;
        case WM_GAME_FACE_LEFT:
            if (v < 0.16f || u > 0.58f) o.c = hair;
            if (in_ellipse(u, v, 0.36f, 0.28f, 0.045f, 0.05f)) o.c = eye;
            break;
        default:
            if (v < 0.16f || u < 0.42f) o.c = hair;
            if (in_ellipse(u, v, 0.64f, 0.28f, 0.045f, 0.05f)) o.c = eye;
            break;
        }
    }
    return o;
}

/* ------------------------------------------------------------------------------------------------
 * Caches
 * ---------------------------------------------------------------------------------------------- */
static uint8_t bake(int c, float amb, int emissive) {
    if (emissive) return (uint8_t)c;
    int v = (int)lrintf((float)c * amb);
    return (uint8_t)(v > 255 ? 255 : v);
}

typedef paint (*painter_fn)(const void *ctx, float u, float v, int gx, int gy);

typedef struct obj_ctx {
    const palette *p;
    int biome, code, var, facing, step;
} obj_ctx;

static paint obj_painter(const void *ctx, float u, float v, int gx, int gy) {
    const obj_ctx *c = ctx;
    return paint_object(c->p, c->biome, c->code, c->var, u, v, gx, gy);
}
static paint player_painter(const void *ctx, float u, float v, int gx, int gy) {
    const obj_ctx *c = ctx;
    return paint_player(c->facing, c->step, u, v, gx, gy);
}

static void paint_sprite(wm_game *g, sprite *s, painter_fn fn, const void *ctx) {
    int ts = g->ts;
    s->top = 2 * ts;
    for (int y = 0; y < 2 * ts; y++)
        for (int x = 0; x < ts; x++) {
            /* sample at the centre of the pixel's cell on the 16-grid so every size shows the same art */
            int gx = x * 16 / ts, gy = y * 16 / ts;
            float u = ((float)gx + 0.5f) / 16.0f, v = ((float)gy + 0.5f) / 16.0f - 1.0f;
            paint o = fn(ctx, u, v, gx, gy - 16);
            uint8_t *d = s->rgb + ((size_t)y * ts + x) * 3;
            s->a[(size_t)y * ts + x] = (uint8_t)(o.a ? 255 : 0);
            d[0] = bake(o.c.r, g->amb[0], o.emissive);
            d[1] = bake(o.c.g, g->amb[1], o.emissive);
            d[2] = bake(o.c.b, g->amb[2], o.emissive);
            if (o.a && y < s->top) s->top = y;
        }
}

static void make_lamp(uint8_t *lamp, int r) {
    for (int y = -r; y <= r; y++)
        for (int x = -r; x <= r; x++) {
            float d2 = (float)(x * x + y * y) / (float)(r * r), f = d2 < 1.0f ? (1.0f - d2) : 0.0f;
            lamp[(y + r) * (2 * r + 1) + (x + r)] = (uint8_t)lrintf(255.0f * f * f);
        }
}

static int build_caches(wm_game *g) {
    int ts = g->ts;
    const palette *p = &k_pal[g->look.biome];
    static const float amb_time[WM_GAME_N_TIMES][3] = {{1.0f, 1.0f, 1.0f}, {0.88f, 0.62f, 0.46f}, {0.20f, 0.24f, 0.40f}};
    for (int c = 0; c < 3; c++) g->amb[c] = amb_time[g->look.time][c];
    if (g->look.weather == WM_GAME_RAIN) {
        static const float rain_tint[3] = {0.74f, 0.78f, 0.86f};
        for (int c = 0; c < 3; c++) g->amb[c] *= rain_tint[c];
    }
    if (!g->mem) {
        size_t spr = (size_t)ts * 2 * ts * 4, n_spr = O_N * N_VAR + 8;
        size_t ground = (size_t)G_N * N_VAR * N_PHASE * ts * ts * 3;
        g->torch_r = ts * 3;
        g->lantern_r = ts * 7 / 2;
        size_t lamps = (size_t)(2 * g->torch_r + 1) * (2 * g->torch_r + 1) + (size_t)(2 * g->lantern_r + 1) * (2 * g->lantern_r + 1);
        g->mem = malloc(spr * n_spr + ground + lamps + (size_t)g->w * g->h * 2 + sizeof(int) * (size_t)g->w + sizeof(uint32_t) * (size_t)g->w * g->h + 6 * (size_t)g->w + 32);
        if (!g->mem) return -1;
        uint8_t *m = g->mem;
        g->ground_rgb = m;
        m += ground;
        for (int o = 0; o < O_N; o++)
            for (int v = 0; v < N_VAR; v++) {
                g->objs[o][v].rgb = m;
                g->objs[o][v].a = m + (size_t)ts * 2 * ts * 3;
                m += spr;
            }
        for (int f = 0; f < 4; f++)
            for (int s = 0; s < 2; s++) {
                g->player[f][s].rgb = m;
                g->player[f][s].a = m + (size_t)ts * 2 * ts * 3;
                m += spr;
            }
        g->torch_lamp = m;
        m += (size_t)(2 * g->torch_r + 1) * (2 * g->torch_r + 1);
        g->lantern = m;
        m += (size_t)(2 * g->lantern_r + 1) * (2 * g->lantern_r + 1);
        g->rain = m;
        m += (size_t)g->w * g->h;
        g->light = m;
        m += (size_t)g->w * g->h;
        m = g->mem + (((size_t)(m - g->mem) + 15) & ~(size_t)15); /* int alignment */
        g->fog_x = (int *)(void *)m;
        m += sizeof(int) * (size_t)g->w;
        g->rain_pts = (uint32_t *)(void *)m;
        m += sizeof(uint32_t) * (size_t)g->w * g->h;
        g->fog_row = m;
        make_lamp(g->torch_lamp, g->torch_r);
        make_lamp(g->lantern, g->lantern_r);
        /* fog density: world-anchored smooth noise of period FOG_PERIOD units, fixed per seed */
        uint16_t *field = malloc(sizeof *field * FOG_PERIOD * FOG_PERIOD);
        if (!field || fbm_field(g->seed ^ 0xF06, 128, FOG_PERIOD, field)) {
            free(field);
            return -1;
        }
        for (int i = 0; i < FOG_PERIOD * FOG_PERIOD; i++) g->fog[i] = (uint8_t)(70 + (int64_t)field[i] * 130 / 65536);
        free(field);
    }
    /* ground tiles */
    for (int t = 0; t < G_N; t++)
        for (int v = 0; v < N_VAR; v++)
            for (int ph = 0; ph < N_PHASE; ph++) {
                uint8_t *d = g->ground_rgb + ((size_t)((t * N_VAR + v) * N_PHASE + ph)) * ts * ts * 3;
                for (int y = 0; y < ts; y++)
                    for (int x = 0; x < ts; x++, d += 3) {
                        int em;
                        rgb8 c = paint_ground(p, t, v, ph, x * 16 / ts, y * 16 / ts, &em);
                        d[0] = bake(c.r, g->amb[0], em);
                        d[1] = bake(c.g, g->amb[1], em);
                        d[2] = bake(c.b, g->amb[2], em);
                    }
            }
    for (int o = 1; o < O_N; o++)
        for (int v = 0; v < N_VAR; v++) {
            obj_ctx ctx = {p, g->look.biome, o, v, 0, 0};
            paint_sprite(g, &g->objs[o][v], obj_painter, &ctx);
        }
    for (int f = 0; f < 4; f++)
        for (int s = 0; s < 2; s++) {
            obj_ctx ctx = {p, g->look.biome, 0, 0, f, s};
            paint_sprite(g, &g->player[f][s], player_painter, &ctx);
        }
    /* light gain: (ambient + strength * level * light colour) / ambient, 8.8 fixed, capped at 12x */
    static const float light_col[3] = {1.0f, 0.82f, 0.55f};
    float strength = g->look.time == WM_GAME_NIGHT ? 0.80f : g->look.time == WM_GAME_DUSK ? 0.45f : 0.0f;
    for (int c = 0; c < 3; c++)
        for (int l = 0; l < 256; l++) {
            float gain = (g->amb[c] + strength * (float)l / 255.0f * light_col[c]) / g->amb[c];
            if (gain > 12.0f) gain = 12.0f;
            g->gain[c][l] = (uint16_t)lrintf(gain * 256.0f);
        }
    static const rgb8 fog_col[WM_GAME_N_TIMES] = {{206, 210, 216}, {196, 160, 138}, {46, 52, 70}};
    g->fog_col = fog_col[g->look.time];
    /* rain: a screen-sized mask of streaks (rain) or flakes (snow, ash), scrolled every frame */
    memset(g->rain, 0, (size_t)g->w * g->h);
    uint64_t rs = g->seed ^ 0xA1A1;
    int flakes = g->look.biome == WM_GAME_SNOW || g->look.biome == WM_GAME_VOLCANIC;
    int count = g->w * g->h / (flakes ? 260 : 320), len = ts * 3 / 8 > 2 ? ts * 3 / 8 : 2, fs = ts / 8 > 1 ? ts / 8 : 1;
    for (int i = 0; i < count; i++) {
        int x = (int)(wm_game_rand(&rs) % (uint64_t)g->w), y = (int)(wm_game_rand(&rs) % (uint64_t)g->h);
        if (flakes) {
            for (int dy = 0; dy < fs; dy++)
                for (int dx = 0; dx < fs; dx++) g->rain[((y + dy) % g->h) * g->w + (x + dx) % g->w] = 1;
        } else {
            for (int k = 0; k < len; k++) g->rain[((y + k) % g->h) * g->w + ((x - k / 4) % g->w + g->w) % g->w] = 1;
        }
    }
    g->n_rain = 0;
    for (int i = 0; i < g->w * g->h; i++)
        if (g->rain[i]) g->rain_pts[g->n_rain++] = (uint32_t)i;
    g->rain_dx = flakes ? ts / 16 : -ts / 8;
    g->rain_dy = flakes ? ts / 8 : ts / 2;
    rgb8 rc = g->look.biome == WM_GAME_SNOW ? (rgb8){246, 248, 255}
              : g->look.biome == WM_GAME_VOLCANIC ? (rgb8){150, 140, 134} : (rgb8){176, 186, 206};
    g->rain_col = (rgb8){bake(rc.r, g->amb[0] * 1.2f, 0), bake(rc.g, g->amb[1] * 1.2f, 0), bake(rc.b, g->amb[2] * 1.2f, 0)};
    g->rain_blend = flakes ? 220 : 140;
    g->cached = g->look;
    g->cache_ok = 1;
    return 0;
}

/* ------------------------------------------------------------------------------------------------
 * Game
 * ---------------------------------------------------------------------------------------------- */
wm_game *wm_game_new(uint64_t seed, const char *prompt, int width, int height) {
    int m = width < height ? width : height;
    if (m < 64 || width > 4096 || height > 4096 || m % 64) return NULL;
    wm_game *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->seed = seed;
    g->w = width;
    g->h = height;
    g->ts = m / WM_GAME_VIEW_TILES;
    wm_game_parse_prompt(prompt, &g->look);
    generate_world(g);
    uint64_t s = seed ^ 0x51A47;
    g->px = (int64_t)(wm_game_rand(&s) % N) * UPT + UPT / 2;
    g->py = (int64_t)(wm_game_rand(&s) % N) * UPT + UPT / 2;
    g->facing = WM_GAME_FACE_DOWN;
    if (build_caches(g)) {
        wm_game_free(g);
        return NULL;
    }
    return g;
}

void wm_game_free(wm_game *g) {
    if (!g) return;
    free(g->mem);
    free(g);
}

void wm_game_set_look(wm_game *g, const wm_game_look *look) {
    if (look->biome >= 0 && look->biome < WM_GAME_N_BIOMES && look->time >= 0 && look->time < WM_GAME_N_TIMES &&
        look->weather >= 0 && look->weather < WM_GAME_N_WEATHERS)
        g->look = *look;
}

void wm_game_set_prompt(wm_game *g, const char *prompt) {
    wm_game_look look;
    wm_game_parse_prompt(prompt, &look);
    g->look = look;
}

void wm_game_step(wm_game *g, const wm_action *a) {
    uint32_t b = a ? a->buttons : 0;
    int dx = !!(b & WM_GAME_BUTTON_RIGHT) - !!(b & WM_GAME_BUTTON_LEFT);
    int dy = !!(b & WM_GAME_BUTTON_DOWN) - !!(b & WM_GAME_BUTTON_UP);
    g->px += dx * WM_GAME_SPEED;
    g->py += dy * WM_GAME_SPEED;
    if (dx || dy) {
        g->walk++;
        g->facing = dx > 0 ? WM_GAME_FACE_RIGHT : dx < 0 ? WM_GAME_FACE_LEFT : dy > 0 ? WM_GAME_FACE_DOWN : WM_GAME_FACE_UP;
    }
    if (b & WM_GAME_BUTTON_TORCH) {
        static const int fdx[4] = {0, 0, -1, 1}, fdy[4] = {1, -1, 0, 0};
        int64_t tx = (g->px >= 0 ? g->px / UPT : (g->px - UPT + 1) / UPT) + fdx[g->facing];
        int64_t ty = (g->py >= 0 ? g->py / UPT : (g->py - UPT + 1) / UPT) + fdy[g->facing];
        int i = widx(tx, ty);
        if (g->ground[i] != G_WATER && g->obj[i] < O_TORCH) {
            g->obj[i] = O_TORCH;
            g->n_torches++;
        }
    }
    g->frame++;
}

static int64_t floordiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

static void blit_sprite(wm_game *g, const sprite *s, int x0, int y0, uint8_t *rgb, size_t pitch) {
    int ts = g->ts, xa = x0 < 0 ? -x0 : 0, xb = x0 + ts > g->w ? g->w - x0 : ts;
    for (int y = s->top; y < 2 * ts; y++) {
        int sy = y0 + y;
        if (sy < 0 || sy >= g->h) continue;
        const uint8_t *a = s->a + (size_t)y * ts, *c = s->rgb + (size_t)y * ts * 3;
        uint8_t *row = rgb + (size_t)sy * pitch;
        for (int x = xa; x < xb; x++)
            if (a[x]) {
                uint8_t *d = row + (size_t)(x0 + x) * 3;
                d[0] = c[x * 3];
                d[1] = c[x * 3 + 1];
                d[2] = c[x * 3 + 2];
            }
    }
}

static void stamp_light(wm_game *g, const uint8_t *lamp, int r, int cx, int cy) {
    const int side = 2 * r + 1, w = g->w, h = g->h;
    const int ya = cy - r < 0 ? 0 : cy - r, yb = cy + r >= h ? h - 1 : cy + r;
    const int xa = cx - r < 0 ? 0 : cx - r, xb = cx + r >= w ? w - 1 : cx + r;
    if (ya > yb || xa > xb) return;
    if (xa < g->lx0) g->lx0 = xa;
    if (xb > g->lx1) g->lx1 = xb;
    if (ya < g->ly0) g->ly0 = ya;
    if (yb > g->ly1) g->ly1 = yb;
    uint8_t *light = g->light;
    for (int y = ya; y <= yb; y++) {
        const uint8_t *l = lamp + (size_t)(y - cy + r) * side + (xa - cx + r);
        uint8_t *d = light + (size_t)y * w + xa;
        for (int x = 0; x <= xb - xa; x++) d[x] = l[x] > d[x] ? l[x] : d[x];
    }
}

void wm_game_render(wm_game *g, uint8_t *rgb, size_t pitch) {
    if (!g->cache_ok || memcmp(&g->cached, &g->look, sizeof g->look)) build_caches(g);
    const int ts = g->ts, w = g->w, h = g->h;
    const int64_t cam_x = g->px * ts / UPT - w / 2, cam_y = g->py * ts / UPT - h / 2;
    const int64_t tx0 = floordiv(cam_x, ts), ty0 = floordiv(cam_y, ts);
    const int ox = (int)(cam_x - tx0 * ts), oy = (int)(cam_y - ty0 * ts);
    const int cols = (w + ox + ts - 1) / ts, rows = (h + oy + ts - 1) / ts;
    const int phase = (int)((g->frame / 4) % N_PHASE);

    /* ground: row copies from the tile cache */
    for (int j = 0; j < rows; j++) {
        int y0 = j * ts - oy;
        for (int i = 0; i < cols; i++) {
            int x0 = i * ts - ox, idx = widx(tx0 + i, ty0 + j);
            const uint8_t *t = g->ground_rgb + ((size_t)((g->ground[idx] * N_VAR + g->var[idx]) * N_PHASE + phase)) * ts * ts * 3;
            int xa = x0 < 0 ? -x0 : 0, xb = x0 + ts > w ? w - x0 : ts;
            for (int y = y0 < 0 ? -y0 : 0; y < ts && y0 + y < h; y++)
                memcpy(rgb + (size_t)(y0 + y) * pitch + (size_t)(x0 + xa) * 3, t + ((size_t)y * ts + xa) * 3, (size_t)(xb - xa) * 3);
        }
    }
    /* objects and the player, back to front by the row their base stands on (tall sprites reach one
     * row up, so the row below the screen is drawn too) */
    const int64_t feet_row = floordiv(g->py + UPT / 2 - 1, UPT);
    int player_drawn = 0;
    for (int j = 0; j <= rows; j++) {
        if (!player_drawn && ty0 + j > feet_row) {
            const sprite *s = &g->player[g->facing][(g->walk / 4) % 2];
            blit_sprite(g, s, w / 2 - ts / 2, h / 2 + ts / 2 - 2 * ts, rgb, pitch);
            player_drawn = 1;
        }
        int y0 = j * ts - oy - ts;
        for (int i = 0; i < cols; i++) {
            int idx = widx(tx0 + i, ty0 + j);
            if (g->obj[idx]) blit_sprite(g, &g->objs[g->obj[idx]][g->var[idx]], i * ts - ox, y0, rgb, pitch);
        }
    }
    if (!player_drawn) blit_sprite(g, &g->player[g->facing][(g->walk / 4) % 2], w / 2 - ts / 2, h / 2 + ts / 2 - 2 * ts, rgb, pitch);

    /* light: the player's lantern at night, torches at dusk and night */
    if (g->look.time != WM_GAME_DAY) {
        memset(g->light, 0, (size_t)w * h);
        g->lx0 = w;
        g->ly0 = h;
        g->lx1 = g->ly1 = -1;
        int any = 0;
        if (g->look.time == WM_GAME_NIGHT) {
            stamp_light(g, g->lantern, g->lantern_r, w / 2, h / 2);
            any = 1;
        }
        int margin = g->torch_r / ts + 1;
        for (int j = -margin; j < rows + margin; j++)
            for (int i = -margin; i < cols + margin; i++)
                if (g->obj[widx(tx0 + i, ty0 + j)] == O_TORCH) {
                    stamp_light(g, g->torch_lamp, g->torch_r, i * ts - ox + ts / 2, j * ts - oy + ts / 4);
                    any = 1;
                }
        const int lx0 = g->lx0, lx1 = g->lx1, ly0 = g->ly0, ly1 = g->ly1;
        const uint16_t *g0 = g->gain[0], *g1 = g->gain[1], *g2 = g->gain[2];
        if (any)
            for (int y = ly0; y <= ly1; y++) {
                const uint8_t *l = g->light + (size_t)y * w;
                uint8_t *d = rgb + (size_t)y * pitch + (size_t)lx0 * 3;
                for (int x = lx0; x <= lx1; x++, d += 3) {
                    const unsigned lv = l[x];
                    if (!lv) continue;
                    unsigned r = ((unsigned)d[0] * g0[lv]) >> 8, gr = ((unsigned)d[1] * g1[lv]) >> 8, b = ((unsigned)d[2] * g2[lv]) >> 8;
                    d[0] = (uint8_t)(r > 255 ? 255 : r);
                    d[1] = (uint8_t)(gr > 255 ? 255 : gr);
                    d[2] = (uint8_t)(b > 255 ? 255 : b);
                }
            }
    }
    /* fog: blend towards the fog colour by a drifting world-anchored density; per row the density is
     * gathered into a byte per channel so the blend runs over plain byte arrays (vectorised) */
    if (g->look.weather == WM_GAME_FOG) {
        const int64_t drift = g->frame / 2;
        int *fx = g->fog_x;
        uint8_t *arow = g->fog_row, *crow = g->fog_row + 3 * (size_t)w;
        for (int x = 0; x < w; x++) {
            int64_t wx = floordiv((cam_x + x) * UPT, ts) + drift;
            fx[x] = (int)(((wx % FOG_PERIOD) + FOG_PERIOD) % FOG_PERIOD);
            crow[3 * x] = g->fog_col.r;
            crow[3 * x + 1] = g->fog_col.g;
            crow[3 * x + 2] = g->fog_col.b;
        }
        for (int y = 0; y < h; y++) {
            int64_t wy = floordiv((cam_y + y) * UPT, ts);
            const uint8_t *frow = g->fog + (size_t)(((wy % FOG_PERIOD) + FOG_PERIOD) % FOG_PERIOD) * FOG_PERIOD;
            for (int x = 0; x < w; x++) arow[3 * x] = arow[3 * x + 1] = arow[3 * x + 2] = frow[fx[x]];
            uint8_t *d = rgb + (size_t)y * pitch;
            for (int i = 0; i < 3 * w; i++) d[i] = (uint8_t)(d[i] + (((crow[i] - d[i]) * arow[i]) >> 8));
        }
    }
    /* rain / snowfall: a screen-anchored mask scrolled by a fixed amount each frame */
    if (g->look.weather == WM_GAME_RAIN) {
        const int sx = (int)(((-(int64_t)g->rain_dx * g->frame) % w + w) % w), sy = (int)(((-(int64_t)g->rain_dy * g->frame) % h + h) % h);
        const int rr = g->rain_col.r, rg = g->rain_col.g, rb = g->rain_col.b, a = g->rain_blend;
        for (int i = 0; i < g->n_rain; i++) { /* mask pixel (mx, my) shows at ((mx - sx) mod w, (my - sy) mod h) */
            int mx = (int)(g->rain_pts[i] % (uint32_t)w) - sx, my = (int)(g->rain_pts[i] / (uint32_t)w) - sy;
            uint8_t *p = rgb + (size_t)(my < 0 ? my + h : my) * pitch + (size_t)(mx < 0 ? mx + w : mx) * 3;
            p[0] = (uint8_t)(p[0] + (((rr - p[0]) * a) >> 8));
            p[1] = (uint8_t)(p[1] + (((rg - p[1]) * a) >> 8));
            p[2] = (uint8_t)(p[2] + (((rb - p[2]) * a) >> 8));
        }
    }
}

void wm_game_get_info(const wm_game *g, wm_game_info *info) {
    memset(info, 0, sizeof *info);
    info->width = g->w;
    info->height = g->h;
    info->tile_px = g->ts;
    info->frame = g->frame;
    info->player_x = g->px;
    info->player_y = g->py;
    info->camera_x = g->px * g->ts / UPT - g->w / 2;
    info->camera_y = g->py * g->ts / UPT - g->h / 2;
    info->facing = g->facing;
    info->n_torches = g->n_torches;
    info->look = g->look;
}

/* ------------------------------------------------------------------------------------------------
 * State snapshots: a fixed header, then the object layer (where torches live)
 * ---------------------------------------------------------------------------------------------- */
typedef struct state_header {
    uint32_t magic, size;
    uint64_t seed;
    int64_t frame, px, py;
    int32_t facing, walk, n_torches, biome, time, weather;
} state_header;

size_t wm_game_state_size(const wm_game *g) {
    (void)g;
    return sizeof(state_header) + (size_t)N * N;
}

int wm_game_state_save(const wm_game *g, void *dst, size_t size) {
    if (!dst || size != wm_game_state_size(g)) return -1;
    state_header hd;
    memset(&hd, 0, sizeof hd);
    hd.magic = STATE_MAGIC;
    hd.size = (uint32_t)size;
    hd.seed = g->seed;
    hd.frame = g->frame;
    hd.px = g->px;
    hd.py = g->py;
    hd.facing = g->facing;
    hd.walk = g->walk;
    hd.n_torches = g->n_torches;
    hd.biome = g->look.biome;
    hd.time = g->look.time;
    hd.weather = g->look.weather;
    memcpy(dst, &hd, sizeof hd);
    memcpy((uint8_t *)dst + sizeof hd, g->obj, (size_t)N * N);
    return 0;
}

int wm_game_state_load(wm_game *g, const void *src, size_t size) {
    state_header hd;
    if (!src || size != wm_game_state_size(g)) return -1;
    memcpy(&hd, src, sizeof hd);
    if (hd.magic != STATE_MAGIC || hd.size != size || hd.seed != g->seed || hd.facing < 0 || hd.facing > 3 ||
        hd.biome < 0 || hd.biome >= WM_GAME_N_BIOMES || hd.time < 0 || hd.time >= WM_GAME_N_TIMES || hd.weather < 0 ||
        hd.weather >= WM_GAME_N_WEATHERS || hd.walk < 0)
        return -1;
    const uint8_t *o = (const uint8_t *)src + sizeof hd;
    for (size_t i = 0; i < (size_t)N * N; i++)
        if (o[i] >= O_N) return -1;
    g->frame = hd.frame;
    g->px = hd.px;
    g->py = hd.py;
    g->facing = hd.facing;
    g->walk = hd.walk;
    g->n_torches = hd.n_torches;
    g->look.biome = hd.biome;
    g->look.time = hd.time;
    g->look.weather = hd.weather;
    memcpy(g->obj, o, (size_t)N * N);
    return 0;
}
