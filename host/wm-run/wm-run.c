/* wm-run.c - the headless runner: loads libwm.so through wm.h (dlopen only), streams a rollout with
 * scripted actions and writes the frames to a video file, with a progress bar and a timing summary.
 *
 * Exit codes: 0 ok, 1 runtime error (the plugin's message is printed), 2 usage error. */
#include "accel_args.h"
#include "actions.h"
#include "st_reader.h"
#include "video_writer.h"
#include "cli.h"
#include "run_opts.h"
#include "wm.h"
#include "wm_host.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef WM_DEFAULT_PLUGIN
#define WM_DEFAULT_PLUGIN "libwm.so"
#endif
#ifndef WM_ASSETS_DIR
#define WM_ASSETS_DIR "assets"
#endif

enum { EXIT_RUNTIME = WM_CLI_EXIT_RUNTIME, EXIT_USAGE = WM_CLI_EXIT_USAGE };

typedef struct options {
    wm_run_opts opts; /* model, session, frames, actions, accelerations, verbosity (run_opts.h) */
    const char *out;
    const char *encoder;
    const char *latents;
    const char *prefill; /* --prefill-latents FILE */
    int info_only;
} options;

static const char *g_prog = "wm-run";

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: %s [options]\n"
        "Runs a world model through the wm plugin and writes the video.\n"
        "\n"
        "  --model DIR             model directory (config.json + model.safetensors) or a config.json;\n"
        "                          default: the model shipped in assets/\n"
        "  --random-weights [SEED] seeded random weights: runs any config without model.safetensors\n"
        "                          (no --model: the demo config assets/demo/config.json)\n"
        "  --frames N              video frames to generate (default 48)\n"
        "  --prompt TEXT           prompt of a text model (default: empty)\n"
        "  --prompt-embedding F    safetensors file with tensor \"prompt\" [L, text_dim]\n"
        "                          (default: one zero token)\n"
        "  --seed N                noise seed (default 0)\n"
        "  --action-guidance W     action guidance in [0, 20] (default: the model's config; 0 = off;\n"
        "                          docs/MODEL.md section 2)\n"
        "  --actions FILE          action script, one line per frame: BUTTONS AXES... [MOUSE_DX MOUSE_DY]\n"
        "                          BUTTONS = names joined by '+', or '-' for none; '#' starts a comment;\n"
        "                          the last line is held after the end of the file\n"
        "  --out FILE              .mp4 .mkv .mov .avi (FFmpeg: H.264, else MPEG-4), .y4m, .rgb (raw);\n"
        "                          default: frames are generated but not written\n"
        "  --encoder NAME          FFmpeg encoder instead of libx264/mpeg4\n"
        "  --latents FILE          raw fp32 dump of every chunk's latents [F][C][H][W], chunks appended\n"
        "                          (the prefilled ones first)\n"
        "  --prefill-latents FILE  context: raw fp32 latents [n][C][H][W] (n a multiple of the model's latent\n"
        "                          frames per chunk, e.g. real frames through the model's encoder) committed\n"
        "                          before generating (session_prefill_latents); their decoded frames are\n"
        "                          the first of the output and of --frames, and take the first lines of\n"
        "                          --actions\n"
        "  --backend cpu|cuda|auto compute backend (default auto: CUDA when a device is present)\n"
        "  --threads N             CPU threads (default 0 = all cores)\n"
        "  --window W              attention window in latent frames (-1 = unbounded; default: the model's)\n"
        "  --sinks S               sink frames kept at the start of the window (default: the model's)\n"
        "  --plugin PATH           libwm.so to load (default: $WM_PLUGIN, else the one of the build tree)\n"
        "  --info                  print the model's description and exit\n"
        "  --quiet                 no progress bar, no summary; errors only\n"
        "  --verbose               also the plugin's debug log\n"
        "  --help                  this text\n"
        "\n"
        "Accelerations (docs/ACCEL.md; default: all off, dense attention):\n"
        "%s"
        "\n"
        "Exit codes: 0 ok, 1 runtime error, 2 usage error.\n"
        "This build writes %s.\n",
        g_prog, wm_accel_args_help,
        video_writer_have_ffmpeg() ? ".mp4 .mkv .mov .avi (FFmpeg), .y4m and .rgb"
                                   : ".y4m and .rgb (no FFmpeg)");
}


/* wm-run's own options (wm_run_opts_own_fn) */
static int own_arg(wm_run_opts *ro, int *i, void *user) {
    options *o = user;
    const char *a = ro->argv[*i];
    if (!strcmp(a, "--info")) return o->info_only = 1;
    if (!strcmp(a, "--out") || !strcmp(a, "-o")) return wm_run_opts_str(ro, i, &o->out);
    if (!strcmp(a, "--encoder")) return wm_run_opts_str(ro, i, &o->encoder);
    if (!strcmp(a, "--latents")) return wm_run_opts_str(ro, i, &o->latents);
    if (!strcmp(a, "--prefill-latents")) return wm_run_opts_str(ro, i, &o->prefill);
    return 0;
}

/* Returns 0 on success, else the exit code. */
static int parse_args(int argc, char **argv, options *o) {
    memset(o, 0, sizeof *o);
    wm_run_opts_init(&o->opts, argc, argv,
                     WM_RUN_OPT_PROMPT | WM_RUN_OPT_FRAMES | WM_RUN_OPT_ACTIONS | WM_RUN_OPT_CACHE |
                         WM_RUN_OPT_VERBOSITY | WM_RUN_OPT_WEIGHT_SEED,
                     48, (long long)1 << 40);
    const int rc = wm_run_opts_parse_args(&o->opts, usage, own_arg, o);
    if (rc) return rc;
    return wm_run_opts_check(&o->opts) < 0 ? EXIT_USAGE : 0;
}

/* ---- locating the plugin and the model ---- */

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Directory of this executable, "" when unknown. */
static void exe_dir(char *buf, size_t size) {
    ssize_t n = readlink("/proc/self/exe", buf, size - 1);
    if (n <= 0) {
        buf[0] = 0;
        return;
    }
    buf[n] = 0;
    char *slash = strrchr(buf, '/');
    if (slash) *slash = 0;
}

/* --plugin, else $WM_PLUGIN, else the build tree's ../plugin/libwm.so beside this executable's
 * directory, else libwm.so beside it, else the path baked in at build time, else the loader's search. */
static const char *find_plugin(const options *o, char *buf, size_t size) {
    if (o->opts.plugin) return o->opts.plugin;
    const char *env = getenv("WM_PLUGIN");
    if (env && *env) return env;
    static const char *const beside[] = {"/../../plugin/libwm.so", /* build/host/wm-run/wm-run */
                                         "/../plugin/libwm.so", "/libwm.so"};
    char dir[PATH_MAX];
    exe_dir(dir, sizeof dir);
    for (int i = 0; dir[0] && i < 3; i++)
        if ((size_t)snprintf(buf, size, "%s%s", dir, beside[i]) < size && file_exists(buf)) return buf;
    if (file_exists(WM_DEFAULT_PLUGIN)) return WM_DEFAULT_PLUGIN;
    return "libwm.so";
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The shipped model: the first directory under assets/ (by name) holding config.json and
 * model.safetensors. */
static int find_shipped_model(char *buf, size_t size) {
    DIR *d = opendir(WM_ASSETS_DIR);
    if (!d) return 0;
    char *names[256];
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < 256;)
        if (e->d_name[0] != '.') names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    int found = 0;
    for (int i = 0; i < n; i++) {
        char cfg[PATH_MAX], st[PATH_MAX];
        snprintf(cfg, sizeof cfg, "%s/%s/config.json", WM_ASSETS_DIR, names[i]);
        snprintf(st, sizeof st, "%s/%s/model.safetensors", WM_ASSETS_DIR, names[i]);
        if (!found && file_exists(cfg) && file_exists(st)) {
            snprintf(buf, size, "%s/%s", WM_ASSETS_DIR, names[i]);
            found = 1;
        }
        free(names[i]);
    }
    return found;
}

/* ---- context prefill ---- */

/* Reads --prefill-latents: raw fp32 [n][C][H][W], n > 0 a multiple of the model's latent frames per
 * chunk, every value finite. Returns the latents (malloc'd) and *n_frames, or NULL with *code set to
 * the exit code after printing the error. */
static float *read_prefill(const char *path, const wm_model_info *info, int *n_frames, int *code) {
    const size_t frame_floats = (size_t)info->latent_channels * info->latent_height * info->latent_width;
    const size_t frame_bytes = frame_floats * sizeof(float);
    struct stat sb;
    const int ok = stat(path, &sb) == 0;
    if (!ok || !S_ISREG(sb.st_mode)) {
        *code = wm_cli_runtime_error("%s: cannot read the prefill latents: %s", path,
                                     !ok ? strerror(errno) : "not a regular file");
        return NULL;
    }
    const long long bytes = (long long)sb.st_size;
    if (bytes == 0 || bytes % (long long)frame_bytes) {
        *code = wm_cli_usage_error("%s: %lld bytes is not a whole, positive number of latent frames: the model's are "
                                   "fp32 %d x %d x %d = %zu bytes each",
                                   path, bytes, info->latent_channels, info->latent_height, info->latent_width,
                                   frame_bytes);
        return NULL;
    }
    const long long n = bytes / (long long)frame_bytes;
    const int F = info->latent_frames_per_chunk;
    if (n % F || n > INT_MAX) {
        *code = wm_cli_usage_error("%s: %lld latent frames, not a multiple of the model's %d latent frames per chunk",
                                   path, n, F);
        return NULL;
    }
    float *lat = malloc((size_t)bytes);
    FILE *f = fopen(path, "rb");
    if (!lat || !f || fread(lat, frame_bytes, (size_t)n, f) != (size_t)n) {
        *code = wm_cli_runtime_error("%s: cannot read %lld bytes", path, bytes);
        if (f) fclose(f);
        free(lat);
        return NULL;
    }
    fclose(f);
    for (size_t i = 0; i < (size_t)n * frame_floats; i++)
        if (!isfinite(lat[i])) {
            *code = wm_cli_usage_error("%s: value %zu (latent frame %zu) is not finite", path, i, i / frame_floats);
            free(lat);
            return NULL;
        }
    *n_frames = (int)n;
    return lat;
}

/* ---- plugin callbacks ---- */

static void on_log(void *user_data, wm_log_level level, const char *message) {
    const options *o = user_data;
    if (level == WM_LOG_DEBUG && !o->opts.verbose) return;
    if (level < WM_LOG_WARN && o->opts.quiet) return;
    static const char *names[] = {"debug", "info", "warning", "error"};
    fprintf(stderr, "wm: %s: %s\n", names[level >= 0 && level <= 3 ? level : 1], message);
}

/* ---- timing ---- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v[n]. */
static double percentile(const double *v, int n, double p) {
    int k = (int)ceil(p / 100.0 * n) - 1;
    return v[k < 0 ? 0 : k >= n ? n - 1 : k];
}

static void progress(const options *o, long long done, long long total, double chunk_ms, double elapsed,
                     int final) {
    if (o->opts.quiet) return;
    const int tty = isatty(2);
    static int last_decile = -1;
    const int decile = (int)(10 * done / total);
    if (!tty && !final && decile == last_decile) return;
    last_decile = decile;
    const double fps = elapsed > 0 ? done / elapsed : 0;
    const double eta = fps > 0 ? (total - done) / fps : 0;
    char bar[31];
    const int fill = (int)(30 * done / total);
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    fprintf(stderr, "%s[%s] %lld/%lld frames  chunk %.0f ms  %.2f fps  ETA %.0fs%s", tty ? "\r" : "", bar,
            done, total, chunk_ms, fps, eta, tty ? "\033[K" : "\n");
    if (tty && final) fputc('\n', stderr);
}

static const char *backend_name(int b) {
    return b == WM_BACKEND_CPU ? "cpu" : b == WM_BACKEND_CUDA ? "cuda" : "auto";
}

static void print_info(const wm_model_info *info, const char *path, int random_weights) {
    printf("model      %s (%s%s)\n", info->name, path, random_weights ? ", random weights" : "");
    printf("parameters %.2f M\n", info->n_params / 1e6);
    if (info->width > 0)
        printf("video      %dx%d RGB at %g fps\n", info->width, info->height, info->fps);
    else
        printf("video      none (no decoder: latents only)\n");
    printf("latents    %d channels x %dx%d, %d latent frames per chunk, %d video frames per latent frame\n",
           info->latent_channels, info->latent_height, info->latent_width, info->latent_frames_per_chunk,
           info->time_upscale);
    printf("prompt     %s (text_len %d, text_dim %d)\n",
           info->prompt_kind == WM_PROMPT_TEXT ? "text" : "embeddings", info->text_len, info->text_dim);
    printf("buttons   ");
    for (int i = 0; i < info->n_buttons; i++) printf(" %s", info->button_names[i]);
    printf("%s\naxes      ", info->n_buttons ? "" : " none");
    for (int i = 0; i < info->n_axes; i++) printf(" %s", info->axis_names[i]);
    printf("%s\nmouse      %s\n", info->n_axes ? "" : " none", info->has_mouse ? "yes" : "no");
    printf("cache      window %d, sinks %d, capacity %d latent frames (-1 = unbounded)\n",
           info->window_frames, info->sink_frames, info->max_cache_frames);
    printf("sampler    %d denoising steps; action guidance %g", info->denoising_steps, info->action_guidance);
    if (info->action_guidance > 0) printf(" on the first %d", info->action_guidance_steps);
    printf("%s\n", info->action_guidance > 0 ? "" : " (off)");
    printf("backend    %s (available:%s%s)\n", backend_name(info->backend),
           info->backends_available & (1u << WM_BACKEND_CPU) ? " cpu" : "",
           info->backends_available & (1u << WM_BACKEND_CUDA) ? " cuda" : "");
}

/* Video frames produced once chunk c (0-based) is done: latent frame f yields video frames
 * u*(f-1)+1 .. u*f (f = 0 yields frame 0), docs/MODEL.md section 8. */
static long long frames_after_chunk(const wm_model_info *info, long long c) {
    const long long last_latent = (c + 1) * info->latent_frames_per_chunk - 1;
    return (long long)info->time_upscale * last_latent + 1;
}

int main(int argc, char **argv) {
    wm_cli_set_prog(g_prog);
    options o;
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc;

    /* model path: --model; else the shipped model; with --random-weights the demo config first */
    char model_buf[PATH_MAX];
    const char *model_path = o.opts.model;
    if (!model_path && o.opts.random_weights && file_exists(WM_ASSETS_DIR "/demo/config.json"))
        model_path = WM_ASSETS_DIR "/demo/config.json";
    if (!model_path && find_shipped_model(model_buf, sizeof model_buf)) model_path = model_buf;
    if (!model_path)
        return wm_cli_usage_error(
            "no model: pass --model DIR (no model is shipped in %s; --random-weights runs a config "
            "without weights)",
            WM_ASSETS_DIR);

    /* plugin */
    char plugin_buf[PATH_MAX];
    const char *plugin_path = find_plugin(&o, plugin_buf, sizeof plugin_buf);
    void *so = dlopen(plugin_path, RTLD_NOW | RTLD_LOCAL);
    if (!so) return wm_cli_runtime_error("cannot load the plugin: %s", dlerror());
    wm_get_api_fn get_api = (wm_get_api_fn)dlsym(so, WM_GET_API_SYMBOL);
    if (!get_api) return wm_cli_runtime_error("%s: no symbol %s: not a wm plugin", plugin_path, WM_GET_API_SYMBOL);
    const wm_api *api = get_api(WM_API_VERSION);
    if (!api) return wm_cli_runtime_error("%s does not speak wm API version %u", plugin_path, WM_API_VERSION);
    if (api->struct_size < sizeof(wm_api))
        return wm_cli_runtime_error("%s: API table of %u bytes, this host needs %zu", plugin_path, api->struct_size,
                             sizeof(wm_api));
    if (o.opts.verbose) fprintf(stderr, "wm-run: plugin %s: %s\n", plugin_path, api->build_info());

    wm_host_catch_interrupt();

    /* model */
    wm_model_params mp;
    api->model_params_init(&mp);
    wm_run_opts_model_params(&o.opts, &mp);
    mp.path = model_path;
    mp.log = on_log;
    mp.log_user_data = &o;
    mp.abort_cb = wm_host_abort_on_interrupt;
    wm_model *model = NULL;
    wm_status st = api->model_load(&mp, &model);
    if (st != WM_OK)
        return wm_cli_runtime_error("cannot load model %s: %s: %s", model_path, api->status_string(st),
                             api->last_error());
    wm_model_info info;
    memset(&info, 0, sizeof info);
    info.size = sizeof info;
    st = api->model_get_info(model, &info);
    if (st != WM_OK) return wm_cli_runtime_error("model info: %s: %s", api->status_string(st), api->last_error());
    if (o.info_only) {
        print_info(&info, model_path, o.opts.random_weights);
        api->model_free(model);
        return 0;
    }
    if (!o.opts.quiet)
        fprintf(stderr, "wm-run: %s%s: %dx%d at %g fps, %.1f M parameters, %s backend\n", info.name,
                o.opts.random_weights ? " (random weights)" : "", info.width, info.height, info.fps,
                info.n_params / 1e6, backend_name(info.backend));

    int ret = 0;
    wm_session *session = NULL;
    video_writer *writer = NULL;
    FILE *latf = NULL;
    float *emb = NULL, *lat = NULL, *pre = NULL;
    int pre_n = 0; /* prefilled latent frames */
    uint8_t *rgb = NULL;
    double *chunk_ms = NULL, *dit_ms = NULL, *dec_ms = NULL;
    action_script script = {0};
    char err[2048];

    if (o.out && info.width <= 0) {
        ret = wm_cli_usage_error("model %s has no decoder (latents only): use --latents FILE instead of --out",
                          info.name);
        goto done;
    }
    if (o.opts.actions) {
        const int ok = action_script_load(o.opts.actions, &info, &script, err, sizeof err);
        if (ok != 1) {
            ret = ok == 0 ? wm_cli_usage_error("%s", err) : wm_cli_runtime_error("%s", err);
            goto done;
        }
    }
    if (o.prefill) {
        pre = read_prefill(o.prefill, &info, &pre_n, &ret);
        if (!pre) goto done;
        const long long need = frames_after_chunk(&info, pre_n / info.latent_frames_per_chunk - 1);
        if (o.opts.frames < need) {
            ret = wm_cli_usage_error("--frames %lld: the %d prefilled latent frames alone make %lld video frames "
                                     "(--frames counts them too)",
                                     o.opts.frames, pre_n, need);
            goto done;
        }
    }
    if (o.opts.prompt && info.prompt_kind != WM_PROMPT_TEXT) {
        ret = wm_cli_usage_error("model %s takes a prompt embedding, not text: use --prompt-embedding FILE",
                          info.name);
        goto done;
    }

    /* session */
    wm_session_params sp;
    api->session_params_init(&sp);
    wm_run_opts_session_params(&o.opts, &sp);
    wm_run_opts_apply_accel(&o.opts, &sp.accel);
    sp.abort_cb = wm_host_abort_on_interrupt;
    const int accel_on = sp.accel.tempcache || sp.accel.annsa || sp.accel.annca || sp.accel.recall_probe > 0;
    char accel_desc[192];
    wm_accel_describe(&sp.accel, accel_desc, sizeof accel_desc);
    st = api->session_new(model, &sp, &session);
    if (st != WM_OK) {
        /* settings the plugin refuses (a budget below one chunk, ...) are the user's to fix */
        if (st == WM_ERR_INVALID_ARGUMENT && o.opts.n_accel > 0)
            ret = wm_cli_usage_error("acceleration settings refused: %s", api->last_error());
        else
            ret = wm_cli_runtime_error("cannot start a session: %s: %s", api->status_string(st),
                                       api->last_error());
        goto done;
    }
    if (accel_on && !o.opts.quiet) fprintf(stderr, "wm-run: accelerations: %s\n", accel_desc);

    /* prompt */
    if (o.opts.prompt_embedding) {
        int64_t shape[ST_MAX_DIMS];
        int ndim = 0;
        emb = st_read_f32(o.opts.prompt_embedding, "prompt", shape, &ndim, err, sizeof err);
        if (!emb) {
            ret = wm_cli_runtime_error("%s", err);
            goto done;
        }
        if (ndim == 3 && shape[0] == 1) { /* [1, L, D]: a batch of one */
            shape[0] = shape[1], shape[1] = shape[2];
            ndim = 2;
        }
        if (ndim != 2 || shape[0] > INT_MAX || shape[1] > INT_MAX) {
            ret = wm_cli_usage_error("%s: tensor \"prompt\" must be [L, text_dim]", o.opts.prompt_embedding);
            goto done;
        }
        st = api->session_set_prompt_embeddings(session, emb, (int)shape[0], (int)shape[1]);
    } else if (info.prompt_kind == WM_PROMPT_TEXT) {
        if (!o.opts.prompt && !o.opts.quiet) fprintf(stderr, "wm-run: no --prompt: using the empty prompt\n");
        st = api->session_set_prompt_text(session, o.opts.prompt ? o.opts.prompt : "");
    } else {
        if (!o.opts.quiet)
            fprintf(stderr, "wm-run: no --prompt-embedding: using one zero token of width %d\n",
                    info.text_dim);
        emb = calloc((size_t)info.text_dim, sizeof *emb);
        st = emb ? api->session_set_prompt_embeddings(session, emb, 1, info.text_dim) : WM_ERR_OUT_OF_MEMORY;
    }
    if (st != WM_OK) {
        ret = wm_cli_runtime_error("cannot set the prompt: %s: %s", api->status_string(st), api->last_error());
        goto done;
    }

    /* outputs */
    const size_t pitch = (size_t)info.width * 3;
    if (info.width > 0) {
        rgb = malloc(pitch * (size_t)info.height);
        if (!rgb) {
            ret = wm_cli_runtime_error("out of memory");
            goto done;
        }
    }
    if (o.out) {
        writer = video_writer_open(o.out, info.width, info.height, info.fps, o.encoder, err, sizeof err);
        if (!writer) {
            ret = wm_cli_runtime_error("%s", err);
            goto done;
        }
    } else if (!o.opts.quiet) {
        fprintf(stderr, "wm-run: no --out: frames are generated but not written\n");
    }
    const size_t lat_n =
        (size_t)info.latent_frames_per_chunk * info.latent_channels * info.latent_height * info.latent_width;
    if (o.latents) {
        latf = fopen(o.latents, "wb");
        lat = malloc(lat_n * sizeof *lat);
        if (!latf || !lat) {
            ret = wm_cli_runtime_error("%s: cannot open for writing", o.latents);
            goto done;
        }
    }

    /* the rollout */
    const long long max_chunks = o.opts.frames + 1; /* every chunk yields at least one frame */
    chunk_ms = malloc(sizeof(double) * (size_t)(max_chunks < 1 << 20 ? max_chunks : 1 << 20));
    dit_ms = malloc(sizeof(double) * (size_t)(max_chunks < 1 << 20 ? max_chunks : 1 << 20));
    dec_ms = malloc(sizeof(double) * (size_t)(max_chunks < 1 << 20 ? max_chunks : 1 << 20));
    if (!chunk_ms || !dit_ms || !dec_ms) {
        ret = wm_cli_runtime_error("out of memory");
        goto done;
    }
    long long done_frames = 0, pushed = 0, n_chunks = 0, n_timed = 0;
    /* the context first: --prefill-latents, one chunk per call (the plugin's frame ring holds two) */
    const long long pre_chunks = pre_n / info.latent_frames_per_chunk;
    double pre_s = 0;
    wm_stats stats;
    memset(&stats, 0, sizeof stats);
    stats.size = sizeof stats;
    int64_t peak_cache = 0;
    /* accelerations, summed over chunks for the summary */
    double sum_sa = 0, sum_ca = 0, sum_sa_recall = 0, sum_ca_recall = 0;
    long long n_sa_recall = 0, n_ca_recall = 0;
    const double t0 = wm_host_now_s();
    progress(&o, 0, o.opts.frames, 0, 0, 0);
    while (done_frames < o.opts.frames) {
        /* actions of every frame the next chunk produces */
        const long long target = frames_after_chunk(&info, n_chunks);
        for (; pushed < target; pushed++) {
            wm_action a = action_script_get(&script, pushed);
            st = api->session_push_action(session, &a);
            if (st != WM_OK) {
                ret = wm_cli_runtime_error("action of frame %lld: %s: %s", pushed, api->status_string(st),
                                    api->last_error());
                goto done;
            }
        }
        int n = 0;
        const int prefilling = n_chunks < pre_chunks;
        const float *pre_chunk = prefilling ? pre + (size_t)n_chunks * lat_n : NULL;
        const double tc = wm_host_now_s();
        if (prefilling)
            st = api->session_prefill_latents(session, pre_chunk, info.latent_frames_per_chunk, &n);
        else
            st = api->session_generate(session, &n);
        if (st == WM_ERR_ABORTED && wm_host_interrupted()) {
            if (!o.opts.quiet) fputc('\n', stderr);
            ret = wm_cli_runtime_error("interrupted after %lld frames", done_frames);
            goto done;
        }
        if (st != WM_OK && prefilling) {
            const long long f0 = n_chunks * info.latent_frames_per_chunk;
            if (st == WM_ERR_INVALID_ARGUMENT)
                ret = wm_cli_usage_error("%s: latent frames %lld-%lld refused: %s", o.prefill, f0,
                                         f0 + info.latent_frames_per_chunk - 1, api->last_error());
            else
                ret = wm_cli_runtime_error("prefill of latent frames %lld-%lld: %s: %s", f0,
                                           f0 + info.latent_frames_per_chunk - 1, api->status_string(st),
                                           api->last_error());
            goto done;
        }
        if (st != WM_OK) {
            ret = wm_cli_runtime_error("chunk %lld: %s: %s", n_chunks, api->status_string(st), api->last_error());
            goto done;
        }
        n_chunks++;
        if (prefilling) {
            pre_s += wm_host_now_s() - tc;
        } else if (api->session_get_stats(session, &stats) == WM_OK && n_timed < (1 << 20)) {
            chunk_ms[n_timed] = stats.last_chunk_ms;
            dit_ms[n_timed] = stats.last_dit_ms;
            dec_ms[n_timed] = stats.last_decode_ms;
            n_timed++;
            if (stats.cache_bytes > peak_cache) peak_cache = stats.cache_bytes;
            sum_sa += stats.sa_density, sum_ca += stats.ca_density;
            if (stats.sa_recall >= 0) sum_sa_recall += stats.sa_recall, n_sa_recall++;
            if (stats.ca_recall >= 0) sum_ca_recall += stats.ca_recall, n_ca_recall++;
        }
        if (latf && prefilling) {
            if (fwrite(pre_chunk, sizeof *pre_chunk, lat_n, latf) != lat_n) {
                ret = wm_cli_runtime_error("%s: write failed", o.latents);
                goto done;
            }
        } else if (latf) {
            int lf = 0;
            st = api->session_read_latents(session, lat, lat_n, &lf);
            if (st != WM_OK) {
                ret = wm_cli_runtime_error("latents: %s: %s", api->status_string(st), api->last_error());
                goto done;
            }
            const size_t count = lat_n / (size_t)info.latent_frames_per_chunk * (size_t)lf;
            if (fwrite(lat, sizeof *lat, count, latf) != count) {
                ret = wm_cli_runtime_error("%s: write failed", o.latents);
                goto done;
            }
        }
        if (info.width > 0) {
            /* read every frame of the chunk, so that none is left waiting; keep those asked for */
            for (int k = 0; k < n; k++) {
                int64_t index = -1;
                st = api->session_read_frame(session, rgb, pitch, pitch * (size_t)info.height, &index);
                if (st != WM_OK) {
                    ret = wm_cli_runtime_error("frame %lld: %s: %s", done_frames, api->status_string(st),
                                        api->last_error());
                    goto done;
                }
                if (done_frames < o.opts.frames) {
                    if (writer && !video_writer_write(writer, rgb, pitch, err, sizeof err)) {
                        ret = wm_cli_runtime_error("%s: %s", o.out, err);
                        goto done;
                    }
                    done_frames++;
                }
            }
        } else {
            done_frames += n < o.opts.frames - done_frames ? n : o.opts.frames - done_frames;
        }
        if (n <= 0) {
            ret = wm_cli_runtime_error("chunk %lld produced no frame", n_chunks - 1);
            goto done;
        }
        progress(&o, done_frames, o.opts.frames, n_timed ? chunk_ms[n_timed - 1] : 0, wm_host_now_s() - t0,
                 done_frames >= o.opts.frames);
    }
    const double wall = wm_host_now_s() - t0;
    if (!o.opts.quiet && pre_chunks > 0)
        fprintf(stderr, "wm-run: prefill: %d latent frames (%lld video frames) committed and decoded in %.2f s\n",
                pre_n, frames_after_chunk(&info, pre_chunks - 1), pre_s);

    if (!o.opts.quiet && n_timed > 0) {
        double mean = 0, mean_dit = 0, mean_dec = 0;
        for (long long i = 0; i < n_timed; i++)
            mean += chunk_ms[i], mean_dit += dit_ms[i], mean_dec += dec_ms[i];
        mean /= n_timed, mean_dit /= n_timed, mean_dec /= n_timed;
        const double first = chunk_ms[0];
        qsort(chunk_ms, (size_t)n_timed, sizeof *chunk_ms, cmp_double);
        char pre_desc[48] = "";
        if (pre_chunks) snprintf(pre_desc, sizeof pre_desc, " (%lld prefilled)", pre_chunks);
        fprintf(stderr, "wm-run: %lld frames in %lld chunks%s, %.2f s, %.2f fps (%s backend)\n", done_frames,
                n_chunks, pre_desc, wall, done_frames / wall, backend_name(info.backend));
        fprintf(stderr,
                "wm-run: chunk ms: mean %.1f  p50 %.1f  p99 %.1f  max %.1f  first %.1f  (DiT %.1f + decode "
                "%.1f mean)\n",
                mean, percentile(chunk_ms, (int)n_timed, 50), percentile(chunk_ms, (int)n_timed, 99),
                chunk_ms[n_timed - 1], first, mean_dit, mean_dec);
        fprintf(stderr, "wm-run: KV cache: %lld tokens per layer, %.2f MiB now, %.2f MiB peak\n",
                (long long)stats.cache_tokens, stats.cache_bytes / 1048576.0, peak_cache / 1048576.0);
        if (accel_on) {
            /* densities: attended share of what dense attention computes, mean over chunks (1 = dense) */
            fprintf(stderr,
                    "wm-run: accel %s: SA density %.3f, CA density %.3f (mean per chunk); TempCache %lld "
                    "merges, %lld evictions (all layers)",
                    accel_desc, sum_sa / n_timed, sum_ca / n_timed, (long long)stats.tc_merges_total,
                    (long long)stats.tc_evictions_total);
            if (n_sa_recall) fprintf(stderr, "; recall SA %.3f", sum_sa_recall / n_sa_recall);
            if (n_ca_recall)
                fprintf(stderr, "%s CA %.3f", n_sa_recall ? "," : "; recall", sum_ca_recall / n_ca_recall);
            fputc('\n', stderr);
        }
    }

done:
    if (writer) {
        const char *desc = video_writer_describe(writer);
        char what[256];
        snprintf(what, sizeof what, "%s", desc);
        if (!video_writer_close(writer, err, sizeof err)) {
            if (!ret) ret = wm_cli_runtime_error("%s: %s", o.out, err);
        } else if (!o.opts.quiet) {
            fprintf(stderr, "wm-run: wrote %s: %s\n", o.out, what);
        }
    }
    if (latf && fclose(latf) != 0 && !ret) ret = wm_cli_runtime_error("%s: write failed", o.latents);
    free(chunk_ms);
    free(dit_ms);
    free(dec_ms);
    free(rgb);
    free(lat);
    free(emb);
    free(pre);
    action_script_free(&script);
    if (session) api->session_free(session);
    api->model_free(model);
    /* The plugin stays loaded until exit: unloading a module that started threads (OpenMP, CUDA)
     * is not worth the risk at the end of a process. */
    return ret;
}
