/* test_input_map.c - the input-map parser of host/common (valid maps, every kind of malformed line with
 * its file:line message, lenient mode, the shipped input_maps/default.map) and the input state that
 * turns device events into per-frame actions (held keys, taps, axes, dead zone, triggers, mouse). */
#include "harness.h"

/* the parser is host code, not part of wm_core: compile it into this test */
#include "../host/common/input_map.c"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const BUTTONS[] = {"up", "down", "left", "right", "jump"};
static const char *const AXES[] = {"steer", "throttle"};

/* A key resolver standing in for SDL's scancode names (case-insensitive, as SDL's). */
static const char *const KEYS[] = {
    "W", "A", "S", "D", "Up", "Down", "Left", "Right",  "Space",  "Return",  "Left Shift", "Left Ctrl",
    "E", "C", "J", "L", "I",  "K",    "Z",    "X",      "V",      "B",       "N",          "M",
    "1", "2", "3", "U", "O",  "Home", "End",  "Insert", "Delete", "Page Up", "Page Down"};
static int resolve(const char *name, void *user) {
    (void)user;
    for (int i = 0; i < (int)(sizeof KEYS / sizeof *KEYS); i++)
        if (!strcasecmp(KEYS[i], name)) return 100 + i;
    return -1;
}
static int key(const char *name) { return resolve(name, NULL); }

static wm_model_info model(int n_buttons, int n_axes, int mouse) {
    wm_model_info info;
    memset(&info, 0, sizeof info);
    info.size = sizeof info;
    info.name = "tiny";
    info.n_buttons = n_buttons;
    info.button_names = BUTTONS;
    info.n_axes = n_axes;
    info.axis_names = AXES;
    info.has_mouse = mouse;
    return info;
}

/* Parses text strictly; expects failure with a message that contains `want`. */
static void expect_error(const wm_model_info *info, const char *text, const char *want) {
    input_map m;
    input_map_init(&m);
    char err[1024] = "";
    int ok = input_map_parse(&m, text, "test.map", info, resolve, NULL, 0, err, sizeof err);
    if (ok || !strstr(err, want)) {
        fprintf(stderr, "map:\n%s\nexpected an error containing \"%s\", got %s: \"%s\"\n", text, want,
                ok ? "success" : "failure", err);
        wm_test_failures++;
    }
    input_map_free(&m);
}

static void test_valid(void) {
    const wm_model_info info = model(5, 2, 1);
    const char *text = "# a comment line\n"
                       "\n"
                       "deadzone 0.2\n"
                       "key W = button up   # trailing comment\n"
                       "key Left = axis steer -1\n"
                       "key right = axis steer 0.5\n"
                       "key \"Left Shift\" = button jump\n"
                       "key Left_Ctrl = button jump\n"
                       "KEY d=button RIGHT\n"
                       "pad a = button jump\n"
                       "pad DPUP = button up\n"
                       "pad leftx = axis steer\n"
                       "pad lefty = axis throttle -2\n"
                       "pad righttrigger = button down\n"
                       "pad rightx = mouse x 8\n"
                       "key J = mouse y -4\n"
                       "mouse = mouse 0.5 -0.25\n"
                       "mouse left = button left\n";
    input_map m;
    input_map_init(&m);
    char err[1024] = "";
    CHECK(input_map_parse(&m, text, "valid.map", &info, resolve, NULL, 0, err, sizeof err));
    if (err[0]) fprintf(stderr, "%s\n", err);
    CHECK(m.n == 15);
    CHECK(m.deadzone > 0.19f && m.deadzone < 0.21f);
    if (m.n == 15) {
        CHECK(m.bindings[0].source == INPUT_SOURCE_KEY && m.bindings[0].code == key("W"));
        CHECK(m.bindings[0].target == INPUT_TARGET_BUTTON && m.bindings[0].index == 0 &&
              m.bindings[0].line == 4);
        CHECK(m.bindings[1].target == INPUT_TARGET_AXIS && m.bindings[1].scale == -1.0f);
        CHECK(m.bindings[3].code == key("Left Shift") && m.bindings[3].index == 4);
        CHECK(m.bindings[4].code == key("Left Ctrl")); /* '_' stands for a blank */
        CHECK(m.bindings[5].code == key("D") && m.bindings[5].index == 3);
        CHECK(m.bindings[6].source == INPUT_SOURCE_PAD_BUTTON && m.bindings[6].code == INPUT_PAD_A);
        CHECK(m.bindings[7].code == INPUT_PAD_DPUP);
        CHECK(m.bindings[8].source == INPUT_SOURCE_PAD_AXIS && m.bindings[8].code == INPUT_PAD_LEFTX);
        CHECK(m.bindings[9].scale == -2.0f && m.bindings[9].index == 1);
        CHECK(m.bindings[11].target == INPUT_TARGET_MOUSE_X && m.bindings[11].scale == 8.0f);
        CHECK(m.bindings[12].target == INPUT_TARGET_MOUSE_Y && m.bindings[12].source == INPUT_SOURCE_KEY);
        CHECK(m.bindings[13].target == INPUT_TARGET_MOUSE && m.bindings[13].scale == 0.5f &&
              m.bindings[13].scale_y == -0.25f);
        CHECK(m.bindings[14].source == INPUT_SOURCE_MOUSE_BUTTON && m.bindings[14].code == 1);
    }

    /* the live state */
    wm_action a;
    input_map_take_action(&m, &info, 4, &a);
    CHECK(a.buttons == 0 && a.axes[0] == 0 && a.mouse_dx == 0);
    CHECK(input_map_digital(&m, INPUT_SOURCE_KEY, key("W"), 1) == 1);
    CHECK(input_map_digital(&m, INPUT_SOURCE_KEY, key("Space"), 1) == 0); /* unbound */
    input_map_digital(&m, INPUT_SOURCE_KEY, key("Left"), 1);
    input_map_digital(&m, INPUT_SOURCE_KEY, key("Right"), 1);
    input_map_take_action(&m, &info, 4, &a);
    CHECK(a.buttons == 1u);
    CHECK(a.axes[0] == -0.5f); /* -1 + 0.5 */
    /* a tap between two actions still counts once */
    input_map_digital(&m, INPUT_SOURCE_KEY, key("W"), 0);
    input_map_digital(&m, INPUT_SOURCE_MOUSE_BUTTON, 1, 1);
    input_map_digital(&m, INPUT_SOURCE_MOUSE_BUTTON, 1, 0);
    input_map_take_action(&m, &info, 4, &a);
    CHECK(a.buttons == (1u << 2));
    input_map_take_action(&m, &info, 4, &a);
    CHECK(a.buttons == 0);
    /* analog: dead zone, rescaling, scale, clamping, trigger as a button */
    input_map_digital(&m, INPUT_SOURCE_KEY, key("Left"), 0);
    input_map_digital(&m, INPUT_SOURCE_KEY, key("Right"), 0);
    CHECK(input_map_pad_axis(&m, INPUT_PAD_LEFTX, 0.1f) == 0); /* inside the dead zone: no change */
    input_map_pad_axis(&m, INPUT_PAD_LEFTX, 0.6f);
    input_map_pad_axis(&m, INPUT_PAD_LEFTY, 0.6f);
    input_map_pad_axis(&m, INPUT_PAD_RIGHTTRIGGER, 0.7f);
    input_map_take_action(&m, &info, 4, &a);
    CHECK(a.axes[0] > 0.49f && a.axes[0] < 0.51f); /* (0.6 - 0.2) / 0.8 */
    CHECK(a.axes[1] == -1.0f);                     /* -2 * 0.5, clamped */
    CHECK(a.buttons == (1u << 1));
    input_map_pad_axis(&m, INPUT_PAD_RIGHTTRIGGER, 0.3f);
    input_map_take_action(&m, &info, 4, &a);
    CHECK(a.buttons == 0);
    /* mouse: motion x sensitivity, spread over the frames; stick and key deltas per frame */
    input_map_pad_axis(&m, INPUT_PAD_LEFTX, 0.0f);
    input_map_pad_axis(&m, INPUT_PAD_LEFTY, 0.0f);
    CHECK(input_map_mouse_motion(&m, 40.0f, 8.0f));
    input_map_digital(&m, INPUT_SOURCE_KEY, key("J"), 1);
    input_map_take_action(&m, &info, 4, &a);
    CHECK(a.mouse_dx == 5.0f);         /* 40 * 0.5 / 4 */
    CHECK(a.mouse_dy == -0.5f - 4.0f); /* 8 * -0.25 / 4, then J */
    input_map_release_all(&m);
    input_map_take_action(&m, &info, 4, &a);
    CHECK(a.mouse_dx == 0.0f && a.mouse_dy == 0.0f); /* motion was taken */
    input_map_mouse_motion(&m, 10.0f, 0.0f);
    input_map_digital(&m, INPUT_SOURCE_KEY, key("W"), 1);
    input_map_digital(&m, INPUT_SOURCE_KEY, key("W"), 0);
    input_map_clear_pending(&m);
    input_map_take_action(&m, &info, 4, &a);
    CHECK(a.buttons == 0 && a.mouse_dx == 0.0f);
    /* a model without a mouse never gets deltas; buttons stay within the model's */
    input_map_free(&m);
}

static void test_errors(void) {
    const wm_model_info info = model(5, 1, 0);
    expect_error(&info, "key W button up\n", "test.map:1: expected 'SOURCE = TARGET'");
    expect_error(&info, "\n\nkey Foo = button up\n", "test.map:3: unknown key 'Foo'");
    expect_error(&info, "pad z = button up\n", "test.map:1: unknown pad input 'z'");
    expect_error(&info, "key W = button fly\n",
                 "test.map:1: unknown button 'fly' (buttons of model 'tiny': up, down, left, right, jump)");
    expect_error(&info, "key W = axis yaw 1\n",
                 "test.map:1: unknown axis 'yaw' (axes of model 'tiny': steer)");
    expect_error(&info, "mouse = mouse 1\n", "test.map:1: model 'tiny' takes no mouse input");
    expect_error(&info, "key J = mouse x 2\n", "test.map:1: model 'tiny' takes no mouse input");
    expect_error(&info, "key W = axis steer fast\n", "test.map:1: axis steer: 'fast' is not a number");
    expect_error(&info, "key W = axis steer 2\n", "is not a number in [-1, 1]");
    expect_error(&info, "pad leftx = axis steer 20\n", "is not a number in [-16, 16]");
    expect_error(&info, "key \"Left Shift = button up\n", "test.map:1: unterminated quote");
    expect_error(&info, "deadzone 1.5\n", "test.map:1: expected 'deadzone VALUE'");
    expect_error(&info, "deadzone\n", "test.map:1: expected 'deadzone VALUE'");
    expect_error(&info, "key W = jump\n", "test.map:1: unknown target 'jump'");
    expect_error(&info, "key W =\n", "test.map:1: missing target");
    expect_error(&info, "key W = button\n", "test.map:1: expected 'button NAME'");
    expect_error(&info, "key W = button up down\n", "test.map:1: expected 'button NAME'");
    expect_error(&info, "joystick 1 = button up\n", "test.map:1: unknown input 'joystick'");
    expect_error(&info, "mouse wheel = button up\n", "test.map:1: unknown mouse button 'wheel'");
    expect_error(&info, "key = button up\n", "test.map:1: expected 'key NAME = ...'");
    const wm_model_info mouse_model = model(5, 1, 1);
    expect_error(&mouse_model, "mouse = button up\n", "mouse motion drives 'mouse SENSITIVITY'");
    expect_error(&mouse_model, "key W = mouse z 1\n", "expected 'mouse x SCALE' or 'mouse y SCALE'");
    expect_error(&mouse_model, "mouse = mouse fast\n", "mouse sensitivity 'fast' is not a number");
    expect_error(&info, "# ok\nkey W = button up\nkey S = button down\nkey X = button crouch\n",
                 "test.map:4: unknown button 'crouch'");
    /* a '#' inside quotes is part of the name, not a comment */
    expect_error(&info, "key \"#\" = button up\n", "test.map:1: unknown key '#'");
}

static void test_lenient_and_defaults(void) {
    const wm_model_info info = model(3, 1, 0);
    input_map m;
    input_map_init(&m);
    char err[1024] = "";
    CHECK(input_map_parse(&m,
                          "key W = button up\nkey E = button use\nkey J = mouse x 1\nkey S = axis steer 1\n",
                          "generic.map", &info, resolve, NULL, 1, err, sizeof err));
    CHECK(m.n == 2 && m.n_skipped == 2);
    CHECK(strstr(m.skipped, "use") && strstr(m.skipped, "mouse"));
    /* lenient mode still refuses malformed lines */
    CHECK(
        !input_map_parse(&m, "key W = buton up\n", "generic.map", &info, resolve, NULL, 1, err, sizeof err));
    CHECK(strstr(err, "generic.map:1: unknown target 'buton'") != NULL);
    /* defaults cover the buttons and axes nothing drives: down, left; steer is driven by S */
    const int before = m.n;
    const int added = input_map_add_defaults(&m, &info, resolve, NULL);
    CHECK(added == m.n - before);
    int drives_down = 0, drives_left = 0, pad_for_down = 0;
    for (int i = before; i < m.n; i++) {
        CHECK(m.bindings[i].line == 0);
        if (m.bindings[i].target == INPUT_TARGET_BUTTON && m.bindings[i].index == 1) {
            drives_down = 1;
            pad_for_down |= m.bindings[i].source == INPUT_SOURCE_PAD_BUTTON;
        }
        if (m.bindings[i].target == INPUT_TARGET_BUTTON && m.bindings[i].index == 2) drives_left = 1;
        CHECK(!(m.bindings[i].target == INPUT_TARGET_AXIS)); /* steer already bound */
        CHECK(!(m.bindings[i].source == INPUT_SOURCE_KEY && m.bindings[i].code == key("W")));
    }
    CHECK(drives_down && drives_left && pad_for_down);
    char desc[4096];
    input_map_describe(&m, &info, desc, sizeof desc);
    CHECK(strstr(desc, "button up") && strstr(desc, "(default)"));
    input_map_free(&m);

    /* a model with a mouse and an unbound axis: the defaults add the mouse, a stick and J/L */
    const wm_model_info mi = model(0, 1, 1);
    input_map_init(&m);
    input_map_add_defaults(&m, &mi, resolve, NULL);
    int has_mouse = 0, has_stick = 0, has_keys = 0;
    for (int i = 0; i < m.n; i++) {
        has_mouse |= m.bindings[i].target == INPUT_TARGET_MOUSE;
        has_stick |= m.bindings[i].source == INPUT_SOURCE_PAD_AXIS && m.bindings[i].code == INPUT_PAD_LEFTX;
        has_keys += m.bindings[i].source == INPUT_SOURCE_KEY && m.bindings[i].target == INPUT_TARGET_AXIS;
    }
    CHECK(has_mouse && has_stick && has_keys == 2);
    input_map_free(&m);

    /* no key resolver (the libretro core): key lines are checked for their action but not kept */
    input_map_init(&m);
    CHECK(input_map_parse(&m, "key W = button up\npad a = button up\n", "pads.map", &info, NULL, NULL, 0, err,
                          sizeof err));
    CHECK(m.n == 1 && m.bindings[0].source == INPUT_SOURCE_PAD_BUTTON);
    CHECK(!input_map_parse(&m, "key W = button fly\n", "pads.map", &info, NULL, NULL, 0, err, sizeof err));
    input_map_free(&m);
}

static void test_files(void) {
    const wm_model_info info = model(5, 0, 0);
    input_map m;
    input_map_init(&m);
    char err[1024], dir[] = "/tmp/wm_input_map_XXXXXX", path[256];
    CHECK(input_map_load(&m, "/nonexistent/x.map", &info, resolve, NULL, 0, err, sizeof err) == -1);
    CHECK(strstr(err, "/nonexistent/x.map: cannot open") != NULL);
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/game.map", dir);
    const char *text = "key W = button up\nkey S = button down\n\nkey Q = button up\n";
    CHECK(wm_test_write_file(path, text, strlen(text)));
    CHECK(input_map_load(&m, path, &info, resolve, NULL, 0, err, sizeof err) == 0);
    char want[300];
    snprintf(want, sizeof want, "%s:4: unknown key 'Q'", path);
    CHECK(strstr(err, want) != NULL);
    if (!strstr(err, want)) fprintf(stderr, "got: %s\n", err);
    unlink(path);
    rmdir(dir);
    input_map_free(&m);

    /* the shipped generic map: parses for the demo's actions and for a model with axes and a mouse */
    const wm_model_info demo = model(5, 0, 0);
    input_map_init(&m);
    int rc =
        input_map_load(&m, WM_SOURCE_DIR "/input_maps/default.map", &demo, resolve, NULL, 1, err, sizeof err);
    if (rc != 1) fprintf(stderr, "%s\n", err);
    CHECK(rc == 1);
    int up_keys = 0;
    for (int i = 0; i < m.n; i++)
        up_keys += m.bindings[i].target == INPUT_TARGET_BUTTON && m.bindings[i].index == 0;
    CHECK(up_keys >= 3); /* W, Up, d-pad up */
    input_map_free(&m);
    const wm_model_info car = model(5, 2, 1);
    input_map_init(&m);
    rc = input_map_load(&m, WM_SOURCE_DIR "/input_maps/default.map", &car, resolve, NULL, 1, err, sizeof err);
    CHECK(rc == 1);
    int mouse = 0, steer = 0;
    for (int i = 0; i < m.n; i++) {
        mouse += m.bindings[i].target == INPUT_TARGET_MOUSE;
        steer += m.bindings[i].target == INPUT_TARGET_AXIS && m.bindings[i].index == 0;
    }
    CHECK(mouse == 1 && steer >= 3);
    input_map_free(&m);
}

int main(void) {
    test_valid();
    test_errors();
    test_lenient_and_defaults();
    test_files();
    return wm_test_finish("test_input_map");
}
