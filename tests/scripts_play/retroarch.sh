#!/bin/sh
# retroarch.sh CORE SOURCE_DIR - Debian's RetroArch runs wm_libretro.so on the tiny random-weight model
# for a few frames and saves a screenshot (under Xvfb when it is installed, else with the null video
# driver). Exit 77 (skipped) without retroarch.
set -u
core=$1 src=$2
command -v retroarch > /dev/null 2>&1 || { echo "SKIP: retroarch not installed (Debian: retroarch)"; exit 77; }
work=$(mktemp -d)
xvfb_pid=
cleanup() {
    [ -n "$xvfb_pid" ] && kill "$xvfb_pid" 2> /dev/null
    rm -rf "$work"
}
trap cleanup EXIT
video=null
if command -v Xvfb > /dev/null 2>&1; then
    Xvfb -displayfd 3 -screen 0 640x480x24 -nolisten tcp 3> "$work/display" 2> /dev/null &
    xvfb_pid=$!
    i=0
    while [ ! -s "$work/display" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    if [ -s "$work/display" ]; then
        DISPLAY=:$(cat "$work/display")
        export DISPLAY
        video=gl
    fi
fi
# a private configuration: nothing is read from or written to the user's RetroArch setup
cat > "$work/retroarch.cfg" << CFG
video_driver = "$video"
audio_driver = "null"
config_save_on_exit = "false"
video_vsync = "false"
pause_nonactive = "false"
savestate_directory = "$work"
screenshot_directory = "$work"
CFG
export HOME="$work" XDG_CONFIG_HOME="$work" WM_BACKEND=cpu WM_THREADS=1
timeout 120 retroarch -c "$work/retroarch.cfg" -L "$core" "$src/tests/scripts_play/tiny.json" --max-frames=48 \
    --max-frames-ss --max-frames-ss-path="$work/shot.png" --verbose > "$work/log.txt" 2>&1
rc=$?
grep '\[wm\]' "$work/log.txt"
fail=0
[ $rc -eq 0 ] || { echo "FAIL: retroarch exit code $rc"; tail -20 "$work/log.txt"; fail=1; }
grep -q "\[wm\] tiny: 64x48 at 16 fps on" "$work/log.txt" || { echo "FAIL: the core did not load the model"; fail=1; }
if [ "$video" = gl ]; then
    [ -s "$work/shot.png" ] || { echo "FAIL: no screenshot"; fail=1; }
fi
[ $fail -eq 0 ] && echo "PASS retroarch ($video video)"
exit $fail
