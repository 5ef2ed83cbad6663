/* gt_render.c - plays the ground-truth game (host/game) under a wm-run action script and writes raw
 * RGB24 frames plus the camera position of every frame. Used by tools/eval/fidelity.py.
 *
 *   gt_render SEED "PROMPT" FRAMES ACTIONS.txt OUT.rgb OUT_CAMERA.txt [WIDTH HEIGHT]   (default 256 256)
 *
 * Action script as wm-run --actions: one line per frame, first token = button names joined by '+'
 * or '-' for none; '#' starts a comment; the last line is held after the end of the file.
 * Frame n is rendered after the game stepped with action n (wm-gamegen's convention).
 * Build: cc -O2 -std=c11 -Ihost/game -Iplugin/include tools/eval/gt_render.c host/game/game.c -lm
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "game.h"

static unsigned parse_buttons(char *line) {
    char *hash = strchr(line, '#');
    if (hash) *hash = 0;
    char *tok = strtok(line, " \t\r\n");
    if (!tok) return 0xFFFFFFFFu; /* blank line: not an action */
    if (strcmp(tok, "-") == 0) return 0;
    unsigned b = 0;
    for (char *name = strtok(tok, "+"); name; name = strtok(NULL, "+")) {
        int k;
        for (k = 0; k < WM_GAME_N_BUTTONS; k++)
            if (strcmp(name, wm_game_button_names[k]) == 0) break;
        if (k == WM_GAME_N_BUTTONS) {
            fprintf(stderr, "gt_render: unknown button '%s'\n", name);
            exit(2);
        }
        b |= 1u << k;
    }
    return b;
}

int main(int argc, char **argv) {
    if (argc != 7 && argc != 9) {
        fprintf(stderr, "usage: gt_render SEED PROMPT FRAMES ACTIONS.txt OUT.rgb OUT_CAMERA.txt [WIDTH HEIGHT]\n");
        return 2;
    }
    const int W = argc == 9 ? atoi(argv[7]) : 256, H = argc == 9 ? atoi(argv[8]) : 256;
    uint64_t seed = strtoull(argv[1], NULL, 0);
    int T = atoi(argv[3]);
    FILE *fa = fopen(argv[4], "r");
    if (!fa || T <= 0) {
        fprintf(stderr, "gt_render: bad frames or action file\n");
        return 2;
    }
    unsigned *acts = calloc((size_t)T, sizeof *acts);
    int n = 0;
    char line[1024];
    while (n < T && fgets(line, sizeof line, fa)) {
        unsigned b = parse_buttons(line);
        if (b != 0xFFFFFFFFu) acts[n++] = b;
    }
    fclose(fa);
    for (int t = n; t < T; t++) acts[t] = n ? acts[n - 1] : 0;
    wm_game *g = wm_game_new(seed, argv[2], W, H); /* NULL for a size the game does not support */
    FILE *fo = fopen(argv[5], "wb"), *fc = fopen(argv[6], "w");
    uint8_t *rgb = malloc((size_t)W * H * 3);
    if (!g || !fo || !fc || !rgb) {
        fprintf(stderr, "gt_render: setup failed (size %dx%d)\n", W, H);
        return 1;
    }
    for (int t = 0; t < T; t++) {
        wm_action a;
        memset(&a, 0, sizeof a);
        a.buttons = acts[t];
        wm_game_step(g, &a);
        wm_game_render(g, rgb, (size_t)W * 3);
        wm_game_info info;
        wm_game_get_info(g, &info);
        if (fwrite(rgb, 1, (size_t)W * H * 3, fo) != (size_t)W * H * 3) return 1;
        fprintf(fc, "%lld %lld\n", (long long)info.camera_x, (long long)info.camera_y);
    }
    fclose(fo);
    fclose(fc);
    wm_game_free(g);
    free(rgb);
    free(acts);
    return 0;
}
