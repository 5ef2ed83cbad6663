/* test_wm_run.c - runs the wm-run executable end to end on tiny random-weight models: video files
 * with the right frame count (ffprobe when installed, else exit 77 after the other checks), raw
 * outputs, determinism, action scripts, prompt embeddings, and the exit codes (2 usage, 1 runtime). */
#include "harness.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define WM_RUN WM_BINARY_DIR "/host/wm-run/wm-run"

static char g_dir[64];
static char g_out[8192]; /* stdout + stderr of the last run */

/* A text model with a decoder: 48x32 frames, chunk 0 = 5 frames, later chunks 8 frames. */
static const char *TEXT_CONFIG =
    "{\"dim\": 32, \"ffn_dim\": 64, \"num_heads\": 2, \"num_layers\": 2, \"in_dim\": 4, \"out_dim\": 4,\n"
    " \"text_dim\": 16, \"text_len\": 8, \"latent_height\": 4, \"latent_width\": 6, \"num_frame_per_block\": "
    "2,\n"
    " \"denoising_step_list\": [1000, 500],\n"
    " \"decoder\": {\"channels\": [8, 8, 8, 8], \"space_upscale\": [true, true, true],\n"
    "             \"time_upscale\": [true, true], \"image_channels\": 3},\n"
    " \"action_buttons\": [\"up\", \"down\", \"left\", \"right\"],\n"
    " \"text_encoder\": {\"vocab\": [\"<pad>\", \"<unk>\", \"red\", \"green\", \"blue\"], \"max_tokens\": "
    "4}}\n";
/* An embedding-prompt model with an axis and a mouse, no time upscale: 24x16 frames. */
static const char *EMB_CONFIG =
    "{\"dim\": 32, \"ffn_dim\": 64, \"num_heads\": 2, \"num_layers\": 1, \"in_dim\": 4, \"out_dim\": 4,\n"
    " \"text_dim\": 16, \"text_len\": 4, \"latent_height\": 4, \"latent_width\": 6, \"num_frame_per_block\": "
    "2,\n"
    " \"denoising_step_list\": [1000],\n"
    " \"decoder\": {\"channels\": [8, 8, 8, 8], \"space_upscale\": [true, true, false],\n"
    "             \"time_upscale\": [false, false], \"image_channels\": 3},\n"
    " \"action_buttons\": [\"fire\"], \"action_axes\": [\"steer\"], \"action_mouse\": true}\n";

static void path_of(char *buf, size_t size, const char *name) { snprintf(buf, size, "%s/%s", g_dir, name); }

static void write_text(const char *name, const char *text) {
    char p[256];
    path_of(p, sizeof p, name);
    CHECK(wm_test_write_file(p, text, strlen(text)));
}

/* Runs wm-run with the arguments; returns its exit code, output in g_out. */
static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...) {
    char args[2048], cmd[4096], log[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    path_of(log, sizeof log, "log.txt");
    snprintf(cmd, sizeof cmd, "'%s' %s > '%s' 2>&1", WM_RUN, args, log);
    int rc = system(cmd);
    rc = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
    size_t n = 0;
    char *text = wm_test_read_file(log, &n);
    snprintf(g_out, sizeof g_out, "%s", text ? text : "");
    free(text);
    printf("$ wm-run %s -> %d\n", args, rc);
    return rc;
}

#define CHECK_RUN(want, ...)                                                                                 \
    do {                                                                                                     \
        int rc_ = run(__VA_ARGS__);                                                                          \
        if (rc_ != (want)) {                                                                                 \
            fprintf(stderr, "%s:%d: exit code %d, expected %d; output:\n%s\n", __FILE__, __LINE__, rc_,      \
                    (want), g_out);                                                                          \
            wm_test_failures++;                                                                              \
        }                                                                                                    \
    } while (0)
#define CHECK_OUTPUT(needle)                                                                                 \
    do {                                                                                                     \
        if (!strstr(g_out, (needle))) {                                                                      \
            fprintf(stderr, "%s:%d: output lacks '%s'; output:\n%s\n", __FILE__, __LINE__, (needle), g_out); \
            wm_test_failures++;                                                                              \
        }                                                                                                    \
    } while (0)

static long file_size(const char *name) {
    char p[256];
    path_of(p, sizeof p, name);
    struct stat st;
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

static int have_ffprobe(void) { return system("ffprobe -version > /dev/null 2>&1") == 0; }

/* "codec,width,height,frames" of the first video stream, counted by decoding. */
static void probe(const char *name, char *buf, size_t size) {
    char p[256], cmd[512];
    path_of(p, sizeof p, name);
    snprintf(cmd, sizeof cmd,
             "ffprobe -v error -count_frames -select_streams v:0 -show_entries "
             "stream=codec_name,width,height,nb_read_frames -of csv=p=0 '%s'",
             p);
    buf[0] = 0;
    FILE *f = popen(cmd, "r");
    if (!f) return;
    if (!fgets(buf, (int)size, f)) buf[0] = 0;
    buf[strcspn(buf, "\r\n")] = 0;
    pclose(f);
    printf("ffprobe %s: %s\n", name, buf);
}

static int same_files(const char *a, const char *b) {
    char pa[256], pb[256];
    path_of(pa, sizeof pa, a);
    path_of(pb, sizeof pb, b);
    size_t na = 0, nb = 0;
    char *x = wm_test_read_file(pa, &na), *y = wm_test_read_file(pb, &nb);
    int same = x && y && na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

/* A safetensors file with one F32 tensor "prompt" [rows, cols]. */
static void write_embedding(const char *name, int rows, int cols) {
    char header[256];
    int hl = snprintf(header, sizeof header,
                      "{\"prompt\":{\"dtype\":\"F32\",\"shape\":[%d,%d],\"data_offsets\":[0,%d]}}", rows,
                      cols, rows * cols * 4);
    while (hl % 8) header[hl++] = ' ';
    size_t size = 8 + (size_t)hl + (size_t)rows * cols * 4;
    unsigned char *buf = calloc(1, size);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, (size_t)hl);
    for (int i = 0; i < rows * cols; i++) {
        float v = 0.1f * (float)((i % 7) - 3);
        memcpy(buf + 8 + hl + 4 * i, &v, 4); /* little-endian host */
    }
    char p[256];
    path_of(p, sizeof p, name);
    CHECK(wm_test_write_file(p, buf, size));
    free(buf);
}

int main(void) {
    if (access(WM_RUN, X_OK) != 0) {
        fprintf(stderr, "%s is missing: build the wm-run target first\n", WM_RUN);
        return 1;
    }
    snprintf(g_dir, sizeof g_dir, "/tmp/wm_test_run_XXXXXX");
    CHECK(mkdtemp(g_dir) != NULL);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/text' '%s/emb'", g_dir, g_dir);
    CHECK(system(cmd) == 0);
    write_text("text/config.json", TEXT_CONFIG);
    write_text("emb/config.json", EMB_CONFIG);
    const char *common = "--random-weights 3 --threads 1 --backend cpu";

    /* usage errors exit 2 */
    CHECK_RUN(2, "--frames abc");
    CHECK_OUTPUT("--frames");
    CHECK_RUN(2, "--no-such-option");
    CHECK_RUN(2, "--model %s/text %s --prompt red --prompt-embedding x.safetensors", g_dir, common);
    CHECK_RUN(2, "--model %s/text %s --backend gpu", g_dir, common);
    CHECK_RUN(0, "--help");
    CHECK_OUTPUT("usage:");

    /* runtime errors exit 1 with the plugin's message */
    CHECK_RUN(1, "--model %s/does-not-exist %s", g_dir, common);
    CHECK_OUTPUT("does-not-exist");
    CHECK_RUN(1, "--model %s/text --threads 1", g_dir); /* no weights */
    CHECK_OUTPUT("error");
    CHECK_RUN(1, "--model %s/text %s --plugin %s/nope.so", g_dir, common, g_dir);

    /* --info */
    CHECK_RUN(0, "--model %s/text %s --info", g_dir, common);
    CHECK_OUTPUT("48x32");
    CHECK_OUTPUT("up down left right");

    /* raw outputs: exact sizes, deterministic, the seed matters */
    CHECK_RUN(0,
              "--model %s/text %s --frames 7 --prompt 'red green' --out %s/a.y4m --latents %s/a.lat --quiet",
              g_dir, common, g_dir, g_dir);
    CHECK(g_out[0] == 0); /* --quiet */
    const long y4m_frame = 6 + 48 * 32 + 2 * 24 * 16;
    const long y4m_header = (long)strlen("YUV4MPEG2 W48 H32 F16:1 Ip A1:1 C420jpeg XYSCSS=420JPEG\n");
    CHECK(file_size("a.y4m") == y4m_header + 7 * y4m_frame);
    CHECK(file_size("a.lat") == 2 * (2 * 4 * 4 * 6) * 4); /* 7 frames = 2 chunks of [2][4][4][6] fp32 */
    CHECK_RUN(0, "--model %s/text %s --frames 7 --prompt 'red green' --out %s/a.rgb -q", g_dir, common,
              g_dir);
    CHECK(file_size("a.rgb") == 7L * 48 * 32 * 3);
    CHECK_RUN(0, "--model %s/text %s --frames 7 --prompt 'red green' --out %s/b.rgb -q", g_dir, common,
              g_dir);
    CHECK(same_files("a.rgb", "b.rgb"));
    CHECK_RUN(0, "--model %s/text %s --frames 7 --prompt 'red green' --seed 5 --out %s/c.rgb -q", g_dir,
              common, g_dir);
    CHECK(!same_files("a.rgb", "c.rgb"));

    /* progress and summary (not quiet) */
    CHECK_RUN(0, "--model %s/text %s --frames 6", g_dir, common);
    CHECK_OUTPUT("empty prompt");
    CHECK_OUTPUT("6/6 frames");
    CHECK_OUTPUT("p50");
    CHECK_OUTPUT("p99");

    /* action scripts: errors name file:line and exit 2 */
    write_text("walk.txt", "# a walk\nup\n\nup+left   # turning\n-\nRIGHT+down\n");
    CHECK_RUN(0, "--model %s/text %s --frames 9 --actions %s/walk.txt --out %s/walk.rgb -q", g_dir, common,
              g_dir, g_dir);
    CHECK(file_size("walk.rgb") == 9L * 48 * 32 * 3);
    CHECK_RUN(0, "--model %s/text %s --frames 9 --out %s/still.rgb -q", g_dir, common, g_dir);
    CHECK(!same_files("walk.rgb", "still.rgb")); /* the actions reach the model */
    write_text("bad.txt", "up\njump\n");
    CHECK_RUN(2, "--model %s/text %s --frames 3 --actions %s/bad.txt", g_dir, common, g_dir);
    CHECK_OUTPUT("bad.txt:2:");
    CHECK_OUTPUT("jump");
    write_text("bad2.txt", "up 0.5\n");
    CHECK_RUN(2, "--model %s/text %s --frames 3 --actions %s/bad2.txt", g_dir, common, g_dir);
    CHECK_OUTPUT("bad2.txt:1:");
    write_text("axes.txt", "fire 0.5\n- -1 3 -2\nfire 1.5\n");
    CHECK_RUN(2, "--model %s/emb %s --frames 3 --actions %s/axes.txt", g_dir, common, g_dir);
    CHECK_OUTPUT("axes.txt:3:");
    CHECK_RUN(1, "--model %s/text %s --frames 3 --actions %s/missing.txt", g_dir, common, g_dir);

    /* --prefill-latents: a context of another run's first 2 chunks (4 latent frames) continues it exactly
     * (the prefill is the cache pass a generated chunk gets); bad files exit 2, a missing one 1 */
    CHECK_RUN(0, "--model %s/text %s --frames 21 --actions %s/walk.txt --latents %s/p.lat --out %s/p.rgb -q", g_dir,
              common, g_dir, g_dir, g_dir);
    {
        const size_t ctx_floats = 4 * 4 * 4 * 6;
        float *lat = malloc(ctx_floats * sizeof(float));
        char path[128];
        path_of(path, sizeof path, "p.lat");
        FILE *f = fopen(path, "rb");
        CHECK(f && fread(lat, sizeof(float), ctx_floats, f) == ctx_floats);
        if (f) fclose(f);
        path_of(path, sizeof path, "ctx.lat");
        f = fopen(path, "wb");
        CHECK(f && fwrite(lat, sizeof(float), ctx_floats, f) == ctx_floats);
        if (f) fclose(f);
        path_of(path, sizeof path, "ctx3.lat"); /* 3 latent frames: not whole chunks */
        f = fopen(path, "wb");
        CHECK(f && fwrite(lat, sizeof(float), 3 * 4 * 4 * 6, f) == 3 * 4 * 4 * 6);
        if (f) fclose(f);
        lat[5] = NAN;
        path_of(path, sizeof path, "nan.lat");
        f = fopen(path, "wb");
        CHECK(f && fwrite(lat, sizeof(float), ctx_floats, f) == ctx_floats);
        if (f) fclose(f);
        free(lat);
    }
    CHECK_RUN(0,
              "--model %s/text %s --frames 21 --actions %s/walk.txt --prefill-latents %s/ctx.lat --latents %s/q.lat "
              "--out %s/q.rgb -q",
              g_dir, common, g_dir, g_dir, g_dir, g_dir);
    CHECK(same_files("p.lat", "q.lat") && same_files("p.rgb", "q.rgb"));
    write_text("odd.lat", "0123456789"); /* not whole latent frames */
    CHECK_RUN(2, "--model %s/text %s --frames 21 --prefill-latents %s/odd.lat", g_dir, common, g_dir);
    CHECK_RUN(2, "--model %s/text %s --frames 21 --prefill-latents %s/ctx3.lat", g_dir, common, g_dir);
    CHECK_OUTPUT("multiple");
    CHECK_RUN(2, "--model %s/text %s --frames 21 --prefill-latents %s/nan.lat", g_dir, common, g_dir);
    CHECK_OUTPUT("finite");
    CHECK_RUN(2, "--model %s/text %s --frames 12 --prefill-latents %s/ctx.lat", g_dir, common, g_dir);
    CHECK_RUN(1, "--model %s/text %s --frames 21 --prefill-latents %s/none.lat", g_dir, common, g_dir);

    /* embedding models: default zero token, a safetensors prompt, --prompt refused */
    CHECK_RUN(0, "--model %s/emb %s --frames 4 --out %s/e0.rgb", g_dir, common, g_dir);
    CHECK_OUTPUT("zero");
    CHECK(file_size("e0.rgb") == 4L * 24 * 16 * 3);
    write_embedding("p.safetensors", 3, 16);
    write_text("axes_ok.txt", "fire 0.5\n- -1 3 -2\n");
    CHECK_RUN(0,
              "--model %s/emb %s --frames 4 --prompt-embedding %s/p.safetensors --actions %s/axes_ok.txt "
              "--out %s/e1.rgb -q",
              g_dir, common, g_dir, g_dir, g_dir);
    CHECK(!same_files("e0.rgb", "e1.rgb"));
    write_embedding("wide.safetensors", 3, 15);
    CHECK_RUN(1, "--model %s/emb %s --frames 4 --prompt-embedding %s/wide.safetensors", g_dir, common, g_dir);
    CHECK_RUN(2, "--model %s/emb %s --frames 4 --prompt hello", g_dir, common);

    /* encoded video (FFmpeg): the frame count, checked by ffprobe */
    int probed = 0;
    if (have_ffprobe()) {
        char info[256];
        CHECK_RUN(0, "--model %s/text %s --frames 7 --out %s/a.mp4 -q", g_dir, common, g_dir);
        probe("a.mp4", info, sizeof info);
        CHECK(!strcmp(info, "h264,48,32,7") || !strcmp(info, "mpeg4,48,32,7"));
        CHECK_RUN(0, "--model %s/text %s --frames 13 --out %s/m.mp4 --encoder mpeg4 -q", g_dir, common,
                  g_dir);
        probe("m.mp4", info, sizeof info);
        CHECK(!strcmp(info, "mpeg4,48,32,13"));
        probe("a.y4m", info, sizeof info);
        CHECK(!strcmp(info, "rawvideo,48,32,7"));
        CHECK_RUN(0, "--model %s/emb %s --frames 5 --out %s/e.mkv -q", g_dir, common, g_dir);
        probe("e.mkv", info, sizeof info);
        CHECK(strstr(info, ",24,16,5") != NULL);
        probed = 1;
    }

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    if (!probed && !wm_test_failures) {
        printf("SKIP test_wm_run: ffprobe is not installed (the other checks passed)\n");
        return 77;
    }
    return wm_test_finish("test_wm_run");
}
