/* test_session_threads.c - wm.h's promise that different sessions may run on different threads at the
 * same time, on the CPU backend (gpu_session_threads.c builds this file for CUDA, label gpu).
 *  1. the backend's fork (backend.h): a fork computes with its parent's weights exactly as the parent
 *     does, counts its own memory plus the parent's, and (CUDA) runs on a stream of its own, not the
 *     model's nor another fork's;
 *  2. two sessions of one model (different seeds, prompts and settings: one with AnnCA and a state
 *     save/load, one with TempCache/AnnSA/AnnCA, a recall probe and a prompt switch) run one after the
 *     other, then two sessions of one freshly loaded model (so the derived weight copies, GEMM plans and
 *     graphs are all made during the concurrent run) run the same rollouts at the same time on two
 *     threads: every frame, the latents and the per-session counters must be bit-identical to the
 *     sequential run. One concurrent session is created on the main thread, the other on its worker.
 * Every rollout runs on a worker thread (OpenMP's thread count is a per-thread setting). */
#include "backend.h"
#include "harness.h"
#include "wm.h"

#include <pthread.h>
#include <stdint.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef WM_SESSION_THREADS_CUDA
#define TEST_NAME "gpu_session_threads"
#define BACKEND WM_BACKEND_CUDA
#else
#define TEST_NAME "test_session_threads"
#define BACKEND WM_BACKEND_CPU
#endif

#ifdef WM_HAVE_CUDA
void *wm_cu_stream(wm_backend *be); /* cuda_backend.h's testing hook (a cudaStream_t) */
#endif

static const wm_api *api;

/* head dim 64 (what the CUDA AnnSA/AnnCA take); 16x16 latents, 2x2 patches: 64 tokens per frame, 2 frames per chunk (one AnnSA block), a window of 8
 * frames; decoder to 128x128 RGB, 4 video frames per latent frame */
static const char *config_json =
    "{\"name\": \"threads-test\", \"dim\": 128, \"ffn_dim\": 256, \"num_heads\": 2, \"num_layers\": 2,\n"
    " \"in_dim\": 4, \"out_dim\": 4, \"text_dim\": 32, \"text_len\": 8, \"latent_height\": 16, \"latent_width\": 16,\n"
    " \"num_frame_per_block\": 2, \"denoising_step_list\": [1000, 750, 500, 250], \"local_attn_size\": 8,\n"
    " \"sink_size\": 2, \"action_buttons\": [\"up\", \"down\", \"left\"],\n"
    " \"text_encoder\": {\"vocab\": [\"<pad>\", \"<unk>\", \"a\", \"the\", \"walk\", \"forest\", \"red\", \"desert\", \"city\"],\n"
    "                  \"max_tokens\": 8},\n"
    " \"decoder\": {\"channels\": [16, 8, 8, 8], \"space_upscale\": [true, true, true], \"time_upscale\": [true, true],\n"
    "             \"image_channels\": 3}}\n";

#define CHUNKS 6
#define MAX_VIDEO (CHUNKS * 8 + 8)

/* ---- 1. the backend's fork ---- */

static float lcg(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static void check_fork(void) {
    wm_backend *be = BACKEND == WM_BACKEND_CUDA ? wm_backend_cuda_new() : wm_backend_cpu_new(0);
    if (!be) {
        fprintf(stderr, "backend: %s\n", wm_get_error());
        CHECK(be != NULL);
        return;
    }
    CHECK(be->fork != NULL);
    if (!be->fork) {
        be->destroy(be);
        return;
    }
    enum { M = 33, K = 64, N = 48 };
    float w[N * K], bias[N], x[M * K];
    uint32_t seed = 7;
    for (int i = 0; i < N * K; i++) w[i] = 0.1f * lcg(&seed);
    for (int i = 0; i < N; i++) bias[i] = lcg(&seed);
    for (int i = 0; i < M * K; i++) x[i] = lcg(&seed);
    wm_weight *W = be->weight_new(be, w, (size_t)N * K), *B = be->weight_new(be, bias, N);
    CHECK(W && B);
    if (!W || !B) return;
    float *xd = wm_test_dev(be, x, (size_t)M * K), *yd = wm_test_dev(be, NULL, (size_t)M * N);
    be->linear(be, yd, xd, W, B, M, K, N);
    float *ref = wm_test_get(be, yd, (size_t)M * N);
    wm_backend *f[2] = {be->fork(be), NULL};
    f[1] = f[0] ? f[0]->fork(f[0]) : NULL; /* a fork of a fork is another fork of the root */
    CHECK(f[0] && f[1]);
    const size_t root_bytes = be->bytes_in_use(be);
    for (int i = 0; i < 2 && f[i]; i++) {
        wm_backend *b = f[i];
        float *xf = wm_test_dev(b, x, (size_t)M * K), *yf = wm_test_dev(b, NULL, (size_t)M * N);
        b->linear(b, yf, xf, W, B, M, K, N); /* the root's weights */
        float *got = wm_test_get(b, yf, (size_t)M * N);
        char what[64];
        snprintf(what, sizeof what, "fork %d: linear with the parent's weights", i);
        CHECK(wm_test_check_exact(what, got, ref, (size_t)M * N));
        const size_t with = b->bytes_in_use(b);
        CHECK(with >= root_bytes + sizeof(float) * (M * K + M * N));
        b->free(b, xf);
        b->free(b, yf);
        const size_t without = b->bytes_in_use(b);
        CHECK(without < with);
        if (BACKEND == WM_BACKEND_CPU) CHECK(without == root_bytes); /* nothing of its own left */
        else CHECK(without > root_bytes); /* its stream's scratch pool and cuBLASLt workspace */
        free(got);
    }
    CHECK(be->bytes_in_use(be) == root_bytes); /* the forks' memory is theirs */
#ifdef WM_HAVE_CUDA
    if (BACKEND == WM_BACKEND_CUDA && f[0] && f[1]) {
        void *s0 = wm_cu_stream(be), *s1 = wm_cu_stream(f[0]), *s2 = wm_cu_stream(f[1]);
        printf("streams: model %p, fork 0 %p, fork 1 %p\n", s0, s1, s2);
        CHECK(s1 != s0 && s2 != s0 && s1 != s2);
    }
#endif
    for (int i = 0; i < 2; i++)
        if (f[i]) f[i]->destroy(f[i]);
    be->free(be, xd);
    be->free(be, yd);
    be->weight_free(be, W);
    be->weight_free(be, B);
    free(ref);
    be->destroy(be);
}

/* ---- 2. sessions on threads ---- */

typedef struct rollout {
    int which;       /* 0: AnnCA with a snapshot, 1: all three and the probe, with a prompt switch */
    wm_model *model;
    wm_session *s;   /* made by the caller, or by the worker when NULL */
    pthread_barrier_t *start;
    int ok;
    /* results */
    int n_frames, width, height;
    uint8_t *frames; /* [n_frames][height][width][3] */
    float *latents;  /* the last chunk's */
    size_t n_latents;
    double sa_density[CHUNKS], ca_density[CHUNKS], sa_recall[CHUNKS];
    int64_t merges[CHUNKS], backend_bytes; /* merges: TempCache's since the start */
} rollout;

static wm_status open_session(wm_model *m, int which, wm_session **out) {
    wm_session_params sp;
    api->session_params_init(&sp);
    sp.seed = which ? 1234 : 77;
    sp.accel.annca = 1; /* both: each session's density counters must stay its own */
    sp.accel.ca_bits = which ? 6 : 5;
    sp.accel.ca_tables = 1;
    sp.accel.ca_min_tokens = 0; /* AnnCA on this model's short prompt context */
    if (which) {
        sp.accel.tempcache = 1;
        sp.accel.tc_threshold = 0.9f;
        sp.accel.annsa = 1;
        sp.accel.sa_bits = 4;
        sp.accel.sa_dense_steps = 0.25f;
        sp.accel.recall_probe = 8;
    }
    wm_status st = api->session_new(m, &sp, out);
    if (st == WM_OK) st = api->session_set_prompt_text(*out, which ? "the red desert" : "a walk through the forest");
    return st;
}

/* One chunk: the actions of its frames queued, generated, its frames read. */
static int chunk(rollout *r, int c) {
    wm_action a;
    memset(&a, 0, sizeof a);
    a.buttons = 1u << ((c + r->which) % 3);
    for (int i = 0; i < 8; i++)
        if (api->session_push_action(r->s, &a) != WM_OK) return 0;
    int n = 0;
    if (api->session_generate(r->s, &n) != WM_OK) return 0;
    const size_t fb = (size_t)r->width * r->height * 3;
    for (int i = 0; i < n; i++) {
        if (r->n_frames == MAX_VIDEO) return 0;
        if (api->session_read_frame(r->s, r->frames + r->n_frames * fb, (size_t)r->width * 3, fb, NULL) != WM_OK)
            return 0;
        r->n_frames++;
    }
    wm_stats st = {.size = sizeof st};
    if (api->session_get_stats(r->s, &st) != WM_OK) return 0;
    r->sa_density[c] = st.sa_density, r->ca_density[c] = st.ca_density, r->sa_recall[c] = st.sa_recall;
    r->merges[c] = st.tc_merges_total;
    r->backend_bytes = st.backend_bytes;
    return 1;
}

static int run_rollout(rollout *r) {
    wm_model_info info = {.size = sizeof info};
    int ready = (r->s || open_session(r->model, r->which, &r->s) == WM_OK) &&
                api->model_get_info(r->model, &info) == WM_OK;
    r->width = info.width, r->height = info.height;
    ready = ready && (r->frames = calloc((size_t)MAX_VIDEO, (size_t)r->width * r->height * 3)) != NULL;
    if (r->start) pthread_barrier_wait(r->start); /* both sessions exist: go together */
    if (!ready) return 0;
    size_t state_size = 0;
    void *state = NULL;
    for (int c = 0; c < CHUNKS; c++) {
        if (r->which == 0 && c == 2) { /* snapshot, one chunk, back to the snapshot: that chunk again */
            if (api->session_state_size(r->s, &state_size) != WM_OK || !(state = malloc(state_size)) ||
                api->session_state_save(r->s, state, state_size) != WM_OK || !chunk(r, c) ||
                api->session_state_load(r->s, state, state_size) != WM_OK)
                return 0;
        }
        if (r->which == 1 && c == 3 && api->session_set_prompt_text(r->s, "a city") != WM_OK) return 0;
        if (!chunk(r, c)) return 0;
    }
    free(state);
    r->n_latents = (size_t)2 * 4 * 16 * 16;
    r->latents = malloc(r->n_latents * sizeof(float));
    int nf = 0;
    return r->latents && api->session_read_latents(r->s, r->latents, r->n_latents, &nf) == WM_OK && nf == 2;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static void *worker(void *p) {
    rollout *r = p;
    r->ok = run_rollout(r);
    if (!r->ok) fprintf(stderr, "rollout %d: %s\n", r->which, api->last_error());
    return NULL;
}

static void rollout_free(rollout *r) {
    if (r->s) api->session_free(r->s);
    free(r->frames);
    free(r->latents);
    r->s = NULL, r->frames = NULL, r->latents = NULL;
}

static wm_status load(wm_model **m) {
    char path[600];
    if (!wm_test_write_config(TEST_NAME "_model", config_json, path, sizeof path)) return WM_ERR_IO;
    wm_model_params mp;
    api->model_params_init(&mp);
    mp.path = path;
    mp.random_weights = 1;
    mp.weight_seed = 3;
    mp.backend = BACKEND;
    return api->model_load(&mp, m);
}

static void compare(const rollout *seq, const rollout *con) {
    const int w = seq->which;
    printf("session %d: %d frames sequentially, %d concurrently\n", w, seq->n_frames, con->n_frames);
    CHECK(seq->n_frames == con->n_frames && seq->n_frames > CHUNKS);
    if (seq->n_frames != con->n_frames) return;
    const size_t fb = (size_t)seq->width * seq->height * 3;
    int bad = 0;
    for (int i = 0; i < seq->n_frames; i++)
        if (memcmp(seq->frames + i * fb, con->frames + i * fb, fb) != 0) {
            if (!bad)
                fprintf(stderr, "session %d: frame %d differs between the sequential and concurrent runs%s\n", w, i,
                        BACKEND == WM_BACKEND_CUDA ? " (GEMM autotuning times algorithms per session backend: does "
                                                     "WM_GEMM_TUNE=0 make the difference go away?)" : "");
            bad++;
        }
    printf("session %d: %d of %d frames differ\n", w, bad, seq->n_frames);
    CHECK(bad == 0);
    char what[64];
    snprintf(what, sizeof what, "session %d: last latents", w);
    CHECK(wm_test_check_exact(what, con->latents, seq->latents, seq->n_latents));
    for (int c = 0; c < CHUNKS; c++) {
        /* the density counters are per session: a shared counter would mix the two */
        CHECK(seq->sa_density[c] == con->sa_density[c] && seq->ca_density[c] == con->ca_density[c]);
        CHECK(seq->sa_recall[c] == con->sa_recall[c] && seq->merges[c] == con->merges[c]);
    }
    printf("session %d, last chunk: AnnSA density %.3f, AnnCA density %.3f, recall %.3f, TempCache merges %lld\n", w,
           seq->sa_density[CHUNKS - 1], seq->ca_density[CHUNKS - 1], seq->sa_recall[CHUNKS - 1],
           (long long)seq->merges[CHUNKS - 1]);
    CHECK(seq->ca_density[CHUNKS - 1] < 1.0); /* the counters counted something */
    if (w == 1) CHECK(seq->merges[CHUNKS - 1] > 0 && seq->sa_recall[CHUNKS - 1] >= 0.0);
    printf("session %d: backend bytes %lld sequentially, %lld concurrently\n", w, (long long)seq->backend_bytes,
           (long long)con->backend_bytes);
    /* a session's stats count the model and this session, not the other one */
    if (BACKEND == WM_BACKEND_CPU) CHECK(seq->backend_bytes == con->backend_bytes);
}

int main(void) {
    api = wm_test_plugin_api();
    if (!api) return 1;
    wm_model *m1 = NULL, *m2 = NULL;
    wm_status st = load(&m1);
    if (BACKEND == WM_BACKEND_CUDA && (st == WM_ERR_NO_DEVICE || st == WM_ERR_UNSUPPORTED)) {
        printf("SKIP: no CUDA device (%s)\n", api->last_error());
        return 77;
    }
    CHECK_STATUS(st, WM_OK);
    if (st != WM_OK) return wm_test_finish(TEST_NAME);
    check_fork();

    /* the references: one session at a time, each on a worker thread */
    rollout seq[2], con[2];
    memset(seq, 0, sizeof seq);
    memset(con, 0, sizeof con);
    double t0 = now_ms();
    for (int i = 0; i < 2; i++) {
        seq[i].which = i, seq[i].model = m1;
        pthread_t t;
        CHECK(pthread_create(&t, NULL, worker, &seq[i]) == 0);
        pthread_join(t, NULL);
        CHECK(seq[i].ok);
    }
    const double seq_ms = now_ms() - t0;
    /* frames of different seeds and prompts differ: the comparison below is not vacuous */
    if (seq[0].ok && seq[1].ok)
        CHECK(memcmp(seq[0].frames, seq[1].frames, (size_t)seq[0].width * seq[0].height * 3) != 0);

    /* the same two rollouts at the same time, on a fresh model */
    CHECK_STATUS(load(&m2), WM_OK);
    if (m2) {
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, 2);
        for (int i = 0; i < 2; i++) con[i].which = i, con[i].model = m2, con[i].start = &start;
        CHECK_STATUS(open_session(m2, 0, &con[0].s), WM_OK); /* on this thread; con[1] makes its own */
        pthread_t t[2];
        t0 = now_ms();
        for (int i = 0; i < 2; i++) CHECK(pthread_create(&t[i], NULL, worker, &con[i]) == 0);
        for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
        /* first chunks included (library handles, plans, derived weights): no benchmark, a sign of overlap */
        printf("both rollouts: %.0f ms one after the other, %.0f ms at the same time\n", seq_ms, now_ms() - t0);
        pthread_barrier_destroy(&start);
        for (int i = 0; i < 2; i++) {
            CHECK(con[i].ok);
            if (seq[i].ok && con[i].ok) compare(&seq[i], &con[i]);
        }
    }
    for (int i = 0; i < 2; i++) rollout_free(&seq[i]), rollout_free(&con[i]);
    api->model_free(m2);
    api->model_free(m1);
    return wm_test_finish(TEST_NAME);
}
