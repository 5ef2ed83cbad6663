/* game.h - the ground-truth game: a deterministic top-down tile world that the world model learns.
 *
 * A torus world of 256 x 256 tiles, procedural from a 64-bit seed (terrain, water, trees, rocks,
 * paths, landmarks), seen through a camera that keeps the player at the centre of the screen. Input
 * is the plugin's own wm_action (plugin/include/wm.h): buttons up, down, left, right move the player
 * a quarter tile per frame (diagonals move on both axes; opposite buttons cancel), and "torch" places
 * a torch on the tile in front of the player: it replaces what stands there, stays for good and
 * lights the dark at dusk and night. Axes and mouse are ignored. Nothing blocks movement, so a
 * command always moves the camera by exactly tile/4 pixels per axis - the world model's action
 * following can be checked against that.
 *
 * The look comes from a text prompt: three attributes (biome, time of day, weather) with synonyms,
 * read from the prompt's words in any order; unknown words are ignored, a missing attribute takes its
 * default (forest, day, clear), and when an attribute is named twice the last word wins. Words are
 * split as the engine's tokenizer does (ASCII lower-case, every character outside [a-z0-9] separates).
 *
 * Rendering: RGB8 of any size with min(w, h) a multiple of 64 in [64, 4096] (default 256 x 256);
 * the view always spans 16 tiles along its shorter side (tile = min(w, h) / 16 pixels). Everything -
 * world, sprites, animation, weather - is a function of the seed, the prompt and the actions, so the
 * same inputs give bit-identical frames. docs/GAME.md describes the game in full.
 */
#ifndef WM_GAME_H
#define WM_GAME_H

#include <stddef.h>
#include <stdint.h>

#include "wm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Buttons: bit i of wm_action.buttons; the model's config.json action_buttons list them in this order. */
#define WM_GAME_BUTTON_UP (1u << 0)
#define WM_GAME_BUTTON_DOWN (1u << 1)
#define WM_GAME_BUTTON_LEFT (1u << 2)
#define WM_GAME_BUTTON_RIGHT (1u << 3)
#define WM_GAME_BUTTON_TORCH (1u << 4)
#define WM_GAME_N_BUTTONS 5
extern const char *const wm_game_button_names[WM_GAME_N_BUTTONS]; /* "up" "down" "left" "right" "torch" */

#define WM_GAME_WORLD_TILES 256 /* the world is WORLD_TILES x WORLD_TILES tiles, wrapping around */
#define WM_GAME_UNITS_PER_TILE 16
#define WM_GAME_SPEED 4 /* world units per frame and axis: a quarter tile */
#define WM_GAME_VIEW_TILES 16

/* The prompt's attributes. */
typedef enum wm_game_attr { WM_GAME_ATTR_BIOME = 0, WM_GAME_ATTR_TIME = 1, WM_GAME_ATTR_WEATHER = 2, WM_GAME_N_ATTRS = 3 } wm_game_attr;
typedef enum wm_game_biome { WM_GAME_FOREST = 0, WM_GAME_DESERT, WM_GAME_SNOW, WM_GAME_VOLCANIC, WM_GAME_N_BIOMES } wm_game_biome;
typedef enum wm_game_time { WM_GAME_DAY = 0, WM_GAME_DUSK, WM_GAME_NIGHT, WM_GAME_N_TIMES } wm_game_time;
typedef enum wm_game_weather { WM_GAME_CLEAR = 0, WM_GAME_RAIN, WM_GAME_FOG, WM_GAME_N_WEATHERS } wm_game_weather;

typedef struct wm_game_look {
    int biome, time, weather; /* wm_game_biome, wm_game_time, wm_game_weather */
} wm_game_look;

typedef enum wm_game_facing { WM_GAME_FACE_DOWN = 0, WM_GAME_FACE_UP, WM_GAME_FACE_LEFT, WM_GAME_FACE_RIGHT } wm_game_facing;

typedef struct wm_game wm_game;

typedef struct wm_game_info {
    int width, height, tile_px;
    int64_t frame;              /* steps taken */
    int64_t player_x, player_y; /* player centre in world units (1 tile = 16 units), not wrapped */
    int64_t camera_x, camera_y; /* world pixel under the frame's top-left pixel, not wrapped */
    int facing;                 /* wm_game_facing */
    int n_torches;
    wm_game_look look;
} wm_game_info;

/* Prompt grammar. */
int wm_game_parse_prompt(const char *prompt, wm_game_look *look); /* returns the number of words recognised */
int wm_game_n_values(int attr);
const char *wm_game_value_name(int attr, int value); /* canonical word ("forest", "dusk", ...) */
/* Every word the grammar knows (synonyms and filler words, no duplicates): the text encoder's vocabulary. */
int wm_game_vocab(const char *const **words);
/* A random prompt of the grammar: each attribute named with probability 0.8 through a random synonym,
 * 0-4 filler words, sometimes a word outside the vocabulary, shuffled; *look gets its meaning.
 * *rng is a splitmix64 state. Returns the length written (buf is always terminated). */
size_t wm_game_random_prompt(uint64_t *rng, char *buf, size_t size, wm_game_look *look);

/* The game. NULL when the size is not supported or memory runs out. prompt may be NULL (defaults). */
wm_game *wm_game_new(uint64_t seed, const char *prompt, int width, int height);
void wm_game_free(wm_game *g);
void wm_game_set_prompt(wm_game *g, const char *prompt); /* takes effect at the next render */
void wm_game_set_look(wm_game *g, const wm_game_look *look);
void wm_game_step(wm_game *g, const wm_action *action); /* NULL = no buttons */
/* Draws the current state into rgb (height rows of `pitch` >= 3*width bytes). */
void wm_game_render(wm_game *g, uint8_t *rgb, size_t pitch);
void wm_game_get_info(const wm_game *g, wm_game_info *info);

/* Snapshot of everything that changes (player, frame, look, the object layer with its torches).
 * The size is fixed for a game; load needs a game of the same seed (the world is regenerated from it,
 * the snapshot checks the seed). Return 0 on success, -1 on a wrong size or a foreign snapshot. */
size_t wm_game_state_size(const wm_game *g);
int wm_game_state_save(const wm_game *g, void *dst, size_t size);
int wm_game_state_load(wm_game *g, const void *src, size_t size);

/* splitmix64 step, shared with the data generator so episode plans are reproducible. */
uint64_t wm_game_rand(uint64_t *state);

#ifdef __cplusplus
}
#endif
#endif /* WM_GAME_H */
