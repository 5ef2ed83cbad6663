/* test_config.c - config.json parsing (docs/MODEL.md section 1): the defaults, a config that sets
 * every key, the Hugging Face Wan2.1-T2V-1.3B config.json as shipped, and one invalid config per
 * type or range rule, each rejected with WM_ERR_CONFIG and a message naming the key. */
#include "config.h"
#include "harness.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void check_wan_defaults(const wm_config *c) {
    CHECK(c->dim == 1536 && c->ffn_dim == 8960 && c->num_heads == 12 && c->num_layers == 30);
    CHECK(c->patch_size[0] == 1 && c->patch_size[1] == 2 && c->patch_size[2] == 2);
    CHECK(c->in_dim == 16 && c->out_dim == 16 && c->text_dim == 4096 && c->text_len == 512 && c->freq_dim == 256);
    CHECK(c->eps == 1e-6f);
    CHECK(c->latent_height == 60 && c->latent_width == 104 && c->num_frame_per_block == 3);
    CHECK(c->n_steps == 4 && c->denoising_step_list[0] == 1000 && c->denoising_step_list[1] == 750 &&
          c->denoising_step_list[2] == 500 && c->denoising_step_list[3] == 250);
    CHECK(c->warp_denoising_step == 1 && c->timestep_shift == 5.0f && c->context_noise == 0);
    CHECK(c->local_attn_size == -1 && c->sink_size == 0 && c->max_cache_frames == 21 && c->fps == 16);
    CHECK(c->n_buttons == 0 && c->n_axes == 0 && c->action_mouse == 0);
    CHECK(c->has_text_encoder == 0 && c->vocab == NULL && c->vocab_size == 0);
    CHECK(c->decoder.present == 0);
    CHECK(wm_config_head_dim(c) == 128 && wm_config_tokens_per_frame(c) == 30 * 52);
    CHECK(wm_config_action_dim(c) == 0 && wm_config_time_upscale(c) == 1 && wm_config_space_upscale(c) == 1);
}

static void test_defaults(void) {
    wm_config c;
    wm_config_defaults(&c);
    check_wan_defaults(&c);
    wm_config_free(&c);
    wm_config_free(&c);

    /* An empty object is the defaults, named after the directory. */
    CHECK_STATUS(wm_config_parse(&c, "{}", 2, "my_model"), WM_OK);
    check_wan_defaults(&c);
    CHECK(!strcmp(c.name, "my_model"));
    wm_config_free(&c);
    printf("defaults: ok\n");
}

static void test_hf_wan(void) {
    /* Wan-AI/Wan2.1-T2V-1.3B config.json, verbatim. */
    const char *hf = "{\n"
                     "  \"_class_name\": \"WanModel\",\n"
                     "  \"_diffusers_version\": \"0.30.0\",\n"
                     "  \"dim\": 1536,\n"
                     "  \"eps\": 1e-06,\n"
                     "  \"ffn_dim\": 8960,\n"
                     "  \"freq_dim\": 256,\n"
                     "  \"in_dim\": 16,\n"
                     "  \"model_type\": \"t2v\",\n"
                     "  \"num_heads\": 12,\n"
                     "  \"num_layers\": 30,\n"
                     "  \"out_dim\": 16,\n"
                     "  \"text_len\": 512\n"
                     "}\n";
    wm_config c;
    CHECK_STATUS(wm_config_parse(&c, hf, strlen(hf), "Wan2.1-T2V-1.3B"), WM_OK);
    check_wan_defaults(&c);
    CHECK(!strcmp(c.name, "Wan2.1-T2V-1.3B"));
    wm_config_free(&c);

    /* Through a file too; a missing file is an I/O error naming the path. */
    char dir[] = "/tmp/wm_test_cfg_XXXXXX", path[128];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/config.json", dir);
    CHECK(wm_test_write_file(path, hf, strlen(hf)));
    CHECK_STATUS(wm_config_load_file(&c, path, "wan13b"), WM_OK);
    check_wan_defaults(&c);
    CHECK(!strcmp(c.name, "wan13b"));
    wm_config_free(&c);
    unlink(path);
    wm_status st = wm_config_load_file(&c, path, "x");
    printf("missing file -> status %d: %s\n", (int)st, wm_get_error());
    CHECK(st == WM_ERR_IO && strstr(wm_get_error(), path));
    wm_config_free(&c);
    st = wm_config_load_file(&c, dir, "x");
    printf("directory    -> status %d: %s\n", (int)st, wm_get_error());
    CHECK(st == WM_ERR_IO);
    wm_config_free(&c);
    rmdir(dir);
    printf("HF Wan2.1-T2V-1.3B config: ok\n");
}

static const char *FULL =
    "{\"name\": \"tiny world\", \"dim\": 96, \"ffn_dim\": 256, \"num_heads\": 4, \"num_layers\": 2,"
    " \"patch_size\": [1, 2, 4], \"in_dim\": 8, \"out_dim\": 8, \"text_dim\": 32, \"text_len\": 16,"
    " \"freq_dim\": 64, \"eps\": 1e-5, \"model_type\": \"t2v\", \"qk_norm\": true, \"cross_attn_norm\": true,"
    " \"window_size\": [-1, -1], \"latent_height\": 6, \"latent_width\": 8, \"num_frame_per_block\": 2,"
    " \"denoising_step_list\": [1000, 800, 600, 400, 200], \"warp_denoising_step\": false,"
    " \"timestep_shift\": 3.5, \"context_noise\": 12.5, \"local_attn_size\": 7, \"sink_size\": 1,"
    " \"max_cache_frames\": 9, \"fps\": 24,"
    " \"action_buttons\": [\"forward\", \"back\", \"jump\"], \"action_axes\": [\"yaw\"], \"action_mouse\": true,"
    " \"text_encoder\": {\"vocab\": [\"<pad>\", \"<unk>\", \"a\", \"cat\"], \"max_tokens\": 12},"
    " \"decoder\": {\"channels\": [32, 16, 8, 8], \"space_upscale\": [true, false, true],"
    "               \"time_upscale\": [false, true], \"image_channels\": 3},"
    " \"_comment\": {\"anything\": [1, 2, null]}}";

static void test_full(void) {
    wm_config c;
    CHECK_STATUS(wm_config_parse(&c, FULL, strlen(FULL), "dirname"), WM_OK);
    CHECK(!strcmp(c.name, "tiny world"));
    CHECK(c.dim == 96 && c.ffn_dim == 256 && c.num_heads == 4 && c.num_layers == 2);
    CHECK(c.patch_size[0] == 1 && c.patch_size[1] == 2 && c.patch_size[2] == 4);
    CHECK(c.in_dim == 8 && c.out_dim == 8 && c.text_dim == 32 && c.text_len == 16 && c.freq_dim == 64);
    CHECK(c.eps == 1e-5f);
    CHECK(c.latent_height == 6 && c.latent_width == 8 && c.num_frame_per_block == 2);
    CHECK(c.n_steps == 5 && c.denoising_step_list[0] == 1000 && c.denoising_step_list[4] == 200);
    CHECK(c.warp_denoising_step == 0 && c.timestep_shift == 3.5f && c.context_noise == 12.5f);
    CHECK(c.local_attn_size == 7 && c.sink_size == 1 && c.max_cache_frames == 9 && c.fps == 24);
    CHECK(c.n_buttons == 3 && !strcmp(c.button_names[0], "forward") && !strcmp(c.button_names[2], "jump"));
    CHECK(c.n_axes == 1 && !strcmp(c.axis_names[0], "yaw") && c.action_mouse == 1);
    CHECK(c.has_text_encoder == 1 && c.vocab_size == 4 && c.max_tokens == 12);
    CHECK(c.vocab && !strcmp(c.vocab[0], "<pad>") && !strcmp(c.vocab[1], "<unk>") && !strcmp(c.vocab[3], "cat"));
    CHECK(c.decoder.present == 1);
    CHECK(c.decoder.channels[0] == 32 && c.decoder.channels[1] == 16 && c.decoder.channels[3] == 8);
    CHECK(c.decoder.space_upscale[0] == 1 && c.decoder.space_upscale[1] == 0 && c.decoder.space_upscale[2] == 1);
    CHECK(c.decoder.time_upscale[0] == 0 && c.decoder.time_upscale[1] == 1 && c.decoder.image_channels == 3);
    CHECK(wm_config_head_dim(&c) == 24 && wm_config_tokens_per_frame(&c) == 3 * 2);
    CHECK(wm_config_action_dim(&c) == 3 + 1 + 2);
    CHECK(wm_config_time_upscale(&c) == 2 && wm_config_space_upscale(&c) == 4);
    wm_config_free(&c);
    CHECK(c.vocab == NULL);

    /* The text need not be NUL-terminated: only `len` bytes are read. */
    const char *tail = "{\"dim\": 768}GARBAGE";
    CHECK_STATUS(wm_config_parse(&c, tail, 12, NULL), WM_OK);
    CHECK(c.dim == 768);
    wm_config_free(&c);

    /* An empty decoder object is TAEHV's standard decoder. */
    const char *dec = "{\"decoder\": {}}";
    CHECK_STATUS(wm_config_parse(&c, dec, strlen(dec), NULL), WM_OK);
    CHECK(c.decoder.present && c.decoder.channels[0] == 256 && c.decoder.channels[3] == 64 &&
          c.decoder.image_channels == 3 && wm_config_time_upscale(&c) == 4 && wm_config_space_upscale(&c) == 8);
    wm_config_free(&c);

    /* Boundary values that are valid. */
    const char *edge = "{\"denoising_step_list\": [1000, 1], \"local_attn_size\": 5, \"sink_size\": 2,"
                       " \"max_cache_frames\": 3, \"context_noise\": 1000, \"dim\": 24, \"num_heads\": 4,"
                       " \"action_buttons\": [], \"action_axes\": [\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\"]}";
    CHECK_STATUS(wm_config_parse(&c, edge, strlen(edge), NULL), WM_OK);
    CHECK(c.n_axes == 8 && c.n_steps == 2 && wm_config_head_dim(&c) == 6);
    CHECK(c.sampler == WM_SAMPLER_SELF_FORCING);
    wm_config_free(&c);
    /* Rolling Forcing's published spans: 5 steps of 3-frame blocks, 21 frames with a 3-frame anchor */
    const char *rf = "{\"sampler\": \"rolling_forcing\", \"denoising_step_list\": [1000, 800, 600, 400, 200],"
                     " \"local_attn_size\": 21, \"sink_size\": 3}";
    CHECK_STATUS(wm_config_parse(&c, rf, strlen(rf), NULL), WM_OK);
    CHECK(c.sampler == WM_SAMPLER_ROLLING_FORCING && c.n_steps == 5);
    wm_config_free(&c);
    const char *fe = "{\"sampler\": \"flow_euler\"}";
    CHECK_STATUS(wm_config_parse(&c, fe, strlen(fe), NULL), WM_OK);
    CHECK(c.sampler == WM_SAMPLER_FLOW_EULER);
    wm_config_free(&c);
    const char *ag = "{\"sampler\": \"flow_euler\", \"action_buttons\": [\"up\"], \"action_guidance\": 1.5,"
                     " \"action_guidance_steps\": 2}";
    CHECK_STATUS(wm_config_parse(&c, ag, strlen(ag), NULL), WM_OK);
    CHECK(c.action_guidance == 1.5f && c.action_guidance_steps == 2);
    wm_config_free(&c);
    CHECK_STATUS(wm_config_parse(&c, fe, strlen(fe), NULL), WM_OK);
    CHECK(c.action_guidance == 0.0f && c.action_guidance_steps >= c.n_steps); /* off by default */
    wm_config_free(&c);
    const char *bad = "{\"sampler\": \"euler\"}";
    CHECK_STATUS(wm_config_parse(&c, bad, strlen(bad), NULL), WM_ERR_CONFIG);
    CHECK(strstr(wm_get_error(), "flow_euler") != NULL);
    printf("full config: ok\n");
}

typedef struct bad_case {
    const char *json;
    wm_status status;
    const char *needle; /* must appear in the message */
} bad_case;

static const bad_case BAD[] = {
    /* unknown and duplicate keys */
    {"{\"xyz\": 1}", WM_ERR_CONFIG, "config.json: unknown key 'xyz'"},
    {"{\"dim\": 1536, \"Dim\": 1536}", WM_ERR_CONFIG, "unknown key 'Dim'"},
    {"{\"\": 1}", WM_ERR_CONFIG, "unknown key ''"},
    {"{\"dim\": 768, \"dim\": 768}", WM_ERR_CONFIG, "duplicate key 'dim'"},
    /* wrong types */
    {"{\"dim\": \"1536\"}", WM_ERR_CONFIG, "'dim'"},
    {"{\"dim\": 1536.5}", WM_ERR_CONFIG, "'dim'"},
    {"{\"ffn_dim\": null}", WM_ERR_CONFIG, "'ffn_dim'"},
    {"{\"num_layers\": true}", WM_ERR_CONFIG, "'num_layers'"},
    {"{\"eps\": \"1e-6\"}", WM_ERR_CONFIG, "'eps'"},
    {"{\"name\": 3}", WM_ERR_CONFIG, "'name'"},
    {"{\"model_type\": 5}", WM_ERR_CONFIG, "'model_type'"},
    {"{\"qk_norm\": 1}", WM_ERR_CONFIG, "'qk_norm'"},
    {"{\"patch_size\": 2}", WM_ERR_CONFIG, "'patch_size'"},
    {"{\"patch_size\": [1, \"2\", 2]}", WM_ERR_CONFIG, "'patch_size[1]'"},
    {"{\"window_size\": null}", WM_ERR_CONFIG, "'window_size'"},
    {"{\"denoising_step_list\": \"1000\"}", WM_ERR_CONFIG, "'denoising_step_list'"},
    {"{\"denoising_step_list\": [1000, \"500\"]}", WM_ERR_CONFIG, "'denoising_step_list[1]'"},
    {"{\"warp_denoising_step\": 1}", WM_ERR_CONFIG, "'warp_denoising_step'"},
    {"{\"fps\": true}", WM_ERR_CONFIG, "'fps'"},
    {"{\"action_buttons\": \"jump\"}", WM_ERR_CONFIG, "'action_buttons'"},
    {"{\"action_buttons\": [1]}", WM_ERR_CONFIG, "'action_buttons[0]'"},
    {"{\"action_mouse\": \"yes\"}", WM_ERR_CONFIG, "'action_mouse'"},
    {"{\"text_encoder\": []}", WM_ERR_CONFIG, "'text_encoder'"},
    {"{\"decoder\": 1}", WM_ERR_CONFIG, "'decoder'"},
    {"{\"decoder\": null}", WM_ERR_CONFIG, "'decoder'"},
    /* dims */
    {"{\"dim\": 0}", WM_ERR_CONFIG, "'dim'"},
    {"{\"dim\": -1536}", WM_ERR_CONFIG, "'dim'"},
    {"{\"dim\": 1e12}", WM_ERR_CONFIG, "'dim'"},
    {"{\"ffn_dim\": 0}", WM_ERR_CONFIG, "'ffn_dim'"},
    {"{\"num_heads\": 0}", WM_ERR_CONFIG, "'num_heads'"},
    {"{\"num_layers\": 0}", WM_ERR_CONFIG, "'num_layers'"},
    {"{\"in_dim\": 0, \"out_dim\": 0}", WM_ERR_CONFIG, "'in_dim'"},
    {"{\"text_dim\": -1}", WM_ERR_CONFIG, "'text_dim'"},
    {"{\"text_len\": 0}", WM_ERR_CONFIG, "'text_len'"},
    {"{\"freq_dim\": 0}", WM_ERR_CONFIG, "'freq_dim'"},
    {"{\"freq_dim\": 255}", WM_ERR_CONFIG, "'freq_dim'"},
    {"{\"eps\": 0}", WM_ERR_CONFIG, "'eps'"},
    {"{\"eps\": -1e-6}", WM_ERR_CONFIG, "'eps'"},
    {"{\"eps\": 1e-50}", WM_ERR_CONFIG, "'eps'"},
    /* dim / heads */
    {"{\"dim\": 100, \"num_heads\": 3}", WM_ERR_CONFIG, "'num_heads'"},
    {"{\"dim\": 36, \"num_heads\": 4}", WM_ERR_CONFIG, "head dim"},
    {"{\"dim\": 8, \"num_heads\": 2}", WM_ERR_CONFIG, "head dim"},
    /* patch and latent grid */
    {"{\"patch_size\": [2, 2, 2]}", WM_ERR_CONFIG, "'patch_size'"},
    {"{\"patch_size\": [1, 0, 2]}", WM_ERR_CONFIG, "'patch_size[1]'"},
    {"{\"patch_size\": [1, 2]}", WM_ERR_CONFIG, "'patch_size'"},
    {"{\"latent_height\": 61}", WM_ERR_CONFIG, "'latent_height'"},
    {"{\"latent_width\": 103}", WM_ERR_CONFIG, "'latent_width'"},
    {"{\"latent_width\": 0}", WM_ERR_CONFIG, "'latent_width'"},
    {"{\"patch_size\": [1, 4, 16]}", WM_ERR_CONFIG, "'latent_width'"}, /* 60 % 4 == 0, 104 % 16 != 0 */
    {"{\"in_dim\": 16, \"out_dim\": 32}", WM_ERR_CONFIG, "'out_dim'"},
    /* Wan keys with one legal value */
    {"{\"model_type\": \"i2v\"}", WM_ERR_CONFIG, "'model_type'"},
    {"{\"qk_norm\": false}", WM_ERR_CONFIG, "'qk_norm'"},
    {"{\"cross_attn_norm\": false}", WM_ERR_CONFIG, "'cross_attn_norm'"},
    {"{\"window_size\": [1, 1]}", WM_ERR_CONFIG, "'window_size'"},
    {"{\"window_size\": [-1]}", WM_ERR_CONFIG, "'window_size'"},
    /* steps */
    {"{\"denoising_step_list\": []}", WM_ERR_CONFIG, "'denoising_step_list'"},
    {"{\"denoising_step_list\": [1000, 1000]}", WM_ERR_CONFIG, "'denoising_step_list'"},
    {"{\"denoising_step_list\": [500, 750]}", WM_ERR_CONFIG, "'denoising_step_list'"},
    {"{\"denoising_step_list\": [1001, 500]}", WM_ERR_CONFIG, "'denoising_step_list[0]'"},
    {"{\"denoising_step_list\": [1000, 0]}", WM_ERR_CONFIG, "'denoising_step_list[1]'"},
    {"{\"denoising_step_list\": [1000, -250]}", WM_ERR_CONFIG, "'denoising_step_list[1]'"},
    {"{\"denoising_step_list\": [1000, 999.5]}", WM_ERR_CONFIG, "'denoising_step_list'"}, /* warp needs integers */
    {"{\"denoising_step_list\": [17,16,15,14,13,12,11,10,9,8,7,6,5,4,3,2,1]}", WM_ERR_CONFIG, "'denoising_step_list'"},
    {"{\"timestep_shift\": 0}", WM_ERR_CONFIG, "'timestep_shift'"},
    {"{\"timestep_shift\": -5}", WM_ERR_CONFIG, "'timestep_shift'"},
    {"{\"timestep_shift\": 1e300}", WM_ERR_CONFIG, "'timestep_shift'"},
    {"{\"context_noise\": -1}", WM_ERR_CONFIG, "'context_noise'"},
    {"{\"context_noise\": 1000.5}", WM_ERR_CONFIG, "'context_noise'"},
    /* cache */
    {"{\"num_frame_per_block\": 0}", WM_ERR_CONFIG, "'num_frame_per_block'"},
    {"{\"local_attn_size\": -2}", WM_ERR_CONFIG, "'local_attn_size'"},
    {"{\"local_attn_size\": 0}", WM_ERR_CONFIG, "'local_attn_size'"},
    {"{\"local_attn_size\": 2}", WM_ERR_CONFIG, "'local_attn_size'"},
    {"{\"local_attn_size\": 4, \"sink_size\": 2}", WM_ERR_CONFIG, "'sink_size'"},
    {"{\"sampler\": \"rolling\"}", WM_ERR_CONFIG, "'sampler'"},
    {"{\"sampler\": 1}", WM_ERR_CONFIG, "'sampler'"},
    /* Rolling Forcing's spans follow from the steps: 4 steps x 3 frames -> window 18, sink 3 */
    {"{\"sampler\": \"rolling_forcing\", \"local_attn_size\": 21, \"sink_size\": 3}", WM_ERR_CONFIG, "'local_attn_size' must be 18"},
    {"{\"sampler\": \"rolling_forcing\", \"local_attn_size\": 18, \"sink_size\": 0}", WM_ERR_CONFIG, "'sink_size' 3"},
    {"{\"sampler\": \"rolling_forcing\", \"local_attn_size\": 18, \"sink_size\": 3, \"recache_on_prompt_switch\": true}",
     WM_ERR_CONFIG, "'recache_on_prompt_switch'"},
    {"{\"sink_size\": -1}", WM_ERR_CONFIG, "'sink_size'"},
    {"{\"max_cache_frames\": 2}", WM_ERR_CONFIG, "'max_cache_frames'"},
    {"{\"max_cache_frames\": 0}", WM_ERR_CONFIG, "'max_cache_frames'"},
    {"{\"fps\": 0}", WM_ERR_CONFIG, "'fps'"},
    {"{\"fps\": -16}", WM_ERR_CONFIG, "'fps'"},
    /* actions */
    {"{\"action_buttons\": [\"jump\", \"jump\"]}", WM_ERR_CONFIG, "'action_buttons'"},
    {"{\"action_buttons\": [\"\"]}", WM_ERR_CONFIG, "'action_buttons[0]'"},
    {"{\"action_axes\": [\"x\", \"y\", \"x\"]}", WM_ERR_CONFIG, "'action_axes'"},
    {"{\"action_axes\": [\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\"]}", WM_ERR_CONFIG, "'action_axes'"},
    {"{\"action_buttons\": [\"b0\",\"b1\",\"b2\",\"b3\",\"b4\",\"b5\",\"b6\",\"b7\",\"b8\",\"b9\",\"b10\",\"b11\","
     "\"b12\",\"b13\",\"b14\",\"b15\",\"b16\",\"b17\",\"b18\",\"b19\",\"b20\",\"b21\",\"b22\",\"b23\",\"b24\",\"b25\","
     "\"b26\",\"b27\",\"b28\",\"b29\",\"b30\",\"b31\",\"b32\"]}",
     WM_ERR_CONFIG, "'action_buttons'"},
    {"{\"action_buttons\": [\"yaw\"], \"action_axes\": [\"yaw\"]}", WM_ERR_CONFIG, "'action_axes'"},
    {"{\"action_buttons\": [\"0123456789012345678901234567890123456789012345678901234567890123\"]}", WM_ERR_CONFIG,
     "'action_buttons[0]'"},
    /* text encoder */
    {"{\"text_encoder\": {\"vocab\": [\"<unk>\"], \"max_tokens\": 4}}", WM_ERR_CONFIG, "'text_encoder.vocab'"},
    {"{\"text_encoder\": {\"vocab\": [\"a\", \"b\", \"a\"], \"max_tokens\": 4}}", WM_ERR_CONFIG, "'text_encoder.vocab'"},
    {"{\"text_encoder\": {\"vocab\": [\"a\", 2], \"max_tokens\": 4}}", WM_ERR_CONFIG, "'text_encoder.vocab[1]'"},
    {"{\"text_encoder\": {\"vocab\": \"ab\", \"max_tokens\": 4}}", WM_ERR_CONFIG, "'text_encoder.vocab'"},
    {"{\"text_encoder\": {\"vocab\": [\"a\", \"b\"], \"max_tokens\": 0}}", WM_ERR_CONFIG, "'text_encoder.max_tokens'"},
    {"{\"text_encoder\": {\"vocab\": [\"a\", \"b\"], \"max_tokens\": 513}}", WM_ERR_CONFIG, "'text_encoder.max_tokens'"},
    {"{\"text_len\": 8, \"text_encoder\": {\"vocab\": [\"a\", \"b\"], \"max_tokens\": 9}}", WM_ERR_CONFIG, "'text_len'"},
    {"{\"text_encoder\": {\"vocab\": [\"a\", \"b\"]}}", WM_ERR_CONFIG, "'text_encoder.max_tokens'"},
    {"{\"text_encoder\": {\"max_tokens\": 4}}", WM_ERR_CONFIG, "'text_encoder.vocab'"},
    {"{\"text_encoder\": {\"vocab\": [\"a\", \"b\"], \"max_tokens\": 4, \"foo\": 1}}", WM_ERR_CONFIG,
     "unknown key 'text_encoder.foo'"},
    /* decoder */
    {"{\"decoder\": {\"channels\": [256, 128, 64]}}", WM_ERR_CONFIG, "'decoder.channels'"},
    {"{\"decoder\": {\"channels\": [256, 128, 0, 64]}}", WM_ERR_CONFIG, "'decoder.channels[2]'"},
    {"{\"decoder\": {\"space_upscale\": [true, true]}}", WM_ERR_CONFIG, "'decoder.space_upscale'"},
    {"{\"decoder\": {\"time_upscale\": [true, 1]}}", WM_ERR_CONFIG, "'decoder.time_upscale[1]'"},
    {"{\"decoder\": {\"image_channels\": 4}}", WM_ERR_CONFIG, "'decoder.image_channels'"},
    {"{\"decoder\": {\"image_channels\": \"rgb\"}}", WM_ERR_CONFIG, "'decoder.image_channels'"},
    {"{\"decoder\": {\"channel\": [1, 2, 3, 4]}}", WM_ERR_CONFIG, "unknown key 'decoder.channel'"},
    /* action guidance: a range, and only where there are actions and a per-chunk sampler */
    {"{\"action_buttons\": [\"up\"], \"action_guidance\": -1}", WM_ERR_CONFIG, "'action_guidance'"},
    {"{\"action_buttons\": [\"up\"], \"action_guidance\": 21}", WM_ERR_CONFIG, "'action_guidance'"},
    {"{\"action_buttons\": [\"up\"], \"action_guidance\": \"1\"}", WM_ERR_CONFIG, "'action_guidance'"},
    {"{\"action_buttons\": [\"up\"], \"action_guidance_steps\": 0}", WM_ERR_CONFIG, "'action_guidance_steps'"},
    {"{\"action_guidance\": 1}", WM_ERR_CONFIG, "needs an action-conditioned model"},
    {"{\"sampler\": \"rolling_forcing\", \"denoising_step_list\": [1000, 500], \"local_attn_size\": 12,"
     " \"sink_size\": 3, \"action_buttons\": [\"up\"], \"action_guidance\": 1}", WM_ERR_CONFIG, "rolling_forcing"},
    /* name */
    {"{\"name\": \"\"}", WM_ERR_CONFIG, "'name'"},
    {"{\"name\": \"0123456789012345678901234567890123456789012345678901234567890123\"}", WM_ERR_CONFIG, "'name'"},
    /* not a config object */
    {"[1, 2]", WM_ERR_CONFIG, "top level"},
    {"\"dim\"", WM_ERR_CONFIG, "top level"},
    /* bad JSON: WM_ERR_FORMAT with the position */
    {"", WM_ERR_FORMAT, "invalid JSON"},
    {"{", WM_ERR_FORMAT, "line 1"},
    {"{\n  \"dim\": 1536,\n}", WM_ERR_FORMAT, "line 3, column 1"},
    {"{\"dim\": 1536} x", WM_ERR_FORMAT, "trailing"},
    {"{\"dim\": 15 36}", WM_ERR_FORMAT, "invalid JSON"},
};

static void test_invalid(void) {
    printf("invalid configs:\n");
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        wm_config c;
        wm_status st = wm_config_parse(&c, BAD[i].json, strlen(BAD[i].json), "m");
        const char *msg = wm_get_error();
        printf("  %-60.60s -> %d: %s\n", BAD[i].json, (int)st, msg);
        if (st != BAD[i].status || !strstr(msg, BAD[i].needle)) {
            fprintf(stderr, "case %zu %s: status %d (want %d), message must contain \"%s\"\n", i, BAD[i].json, (int)st,
                    (int)BAD[i].status, BAD[i].needle);
            wm_test_failures++;
        }
        if (BAD[i].status == WM_ERR_CONFIG && !strstr(msg, "config.json")) {
            fprintf(stderr, "case %zu: message does not name config.json\n", i);
            wm_test_failures++;
        }
        wm_config_free(&c);
    }
    /* Leading-underscore keys are ignored whatever they hold. */
    const char *ign = "{\"_class_name\": [1, {\"x\": null}], \"_\": 0, \"dim\": 768}";
    wm_config c;
    CHECK_STATUS(wm_config_parse(&c, ign, strlen(ign), NULL), WM_OK);
    CHECK(c.dim == 768);
    wm_config_free(&c);
}

int main(void) {
    test_defaults();
    test_hf_wan();
    test_full();
    test_invalid();
    return wm_test_finish("test_config");
}
