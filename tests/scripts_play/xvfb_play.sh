#!/bin/sh
# xvfb_play.sh WM_PLAY SOURCE_DIR [SCREENSHOT_OUT] - a scripted wm-play session on a virtual X server:
# the tiny random-weight model on the CPU, key presses and a typed prompt sent with xdotool, screenshots
# taken with FFmpeg's x11grab. Checks that the shown frames change, that the key reached the model (the
# replay file logs it, and the same replay without it differs from the frame the key was first held),
# the F12 screenshot, the MP4 recording's frame count, and that the recording replays bit for bit, both
# headless and in the window. The acceleration hotkeys: Alt+2 asks for AnnSA with a setting the plugin
# refuses (the notice carries its message), Alt+1 / Alt+3 switch TempCache and AnnCA on mid-stream (the
# notice names the frame, the frames keep changing, the replay file logs the switch and its replays
# stay bit-identical). Exit 77 (skipped) without Xvfb, xdotool or ffmpeg.
set -u
play=$1 src=$2 shot_out=${3:-}
for tool in Xvfb xdotool ffmpeg; do
    command -v $tool > /dev/null 2>&1 || { echo "SKIP: $tool not installed (Debian: xvfb xdotool ffmpeg)"; exit 77; }
done
work=$(mktemp -d)
xvfb_pid= play_pid=
cleanup() {
    [ -n "$play_pid" ] && kill "$play_pid" 2> /dev/null
    [ -n "$xvfb_pid" ] && kill "$xvfb_pid" 2> /dev/null
    rm -rf "$work"
}
trap cleanup EXIT
fail=0
check() {
    what=$1
    shift
    if ! "$@"; then
        echo "FAIL: $what"
        fail=1
    fi
}

# a free display number, reported by the server itself
Xvfb -displayfd 3 -screen 0 640x480x24 -nolisten tcp 3> "$work/display" 2> "$work/xvfb.log" &
xvfb_pid=$!
i=0
while [ ! -s "$work/display" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -s "$work/display" ] || { echo "SKIP: Xvfb did not start"; cat "$work/xvfb.log"; exit 77; }
DISPLAY=:$(cat "$work/display")
export DISPLAY
echo "Xvfb on $DISPLAY"

grab() { # grab FILE: the whole screen as raw RGB
    ffmpeg -loglevel error -y -f x11grab -video_size 640x480 -i "$DISPLAY" -frames:v 1 -f rawvideo -pix_fmt rgb24 "$1"
}

tiny="$src/tests/scripts_play/tiny.json"
# --sa-dense-steps 2 is accepted while AnnSA is off and refused by the plugin once Alt+2 turns it on
"$play" --model "$tiny" --random-weights --backend cpu --threads 1 --no-hud --scale 8 --max-frames 300 \
    --tc-threshold 0.6 --sa-dense-steps 2 --record "$work/rec.mp4" --out-dir "$work" > "$work/play.log" 2>&1 &
play_pid=$!
win=$(timeout 20 xdotool search --sync --name '^wm-play' | head -1)
[ -n "$win" ] || { echo "FAIL: no wm-play window"; cat "$work/play.log"; exit 1; }
xdotool windowfocus --sync "$win"
sleep 1.5
grab "$work/s1.rgb"
sleep 0.7
grab "$work/s2.rgb"
check "screenshots taken" [ -s "$work/s1.rgb" ]
check "the shown frames change" sh -c "! cmp -s '$work/s1.rgb' '$work/s2.rgb'"
xdotool keydown Up
sleep 1.5
xdotool keyup Up
sleep 0.3
xdotool key F12
xdotool key F6
sleep 0.2
xdotool type --delay 20 "red city"
xdotool key Return
sleep 1
# the accelerations, live: AnnSA refused, then TempCache and AnnCA on from the next chunk
xdotool key alt+2
sleep 0.4
xdotool key alt+1
sleep 0.4
xdotool key alt+3
sleep 0.8
grab "$work/s3.rgb"
sleep 0.7
grab "$work/s4.rgb"
check "the shown frames change with TempCache and AnnCA on" sh -c "! cmp -s '$work/s3.rgb' '$work/s4.rgb'"
# state slots and a second recording that starts from a loaded state (its replay regenerates the
# slot's history first), then reset and pause
xdotool key F10
sleep 0.3
xdotool key F5
sleep 1
xdotool key F9
sleep 0.2
xdotool key F10
sleep 1.5
xdotool key F3
sleep 0.5
xdotool key F2
sleep 0.3
xdotool key F2
[ -n "$shot_out" ] && ffmpeg -loglevel error -y -f x11grab -video_size 640x480 -i "$DISPLAY" -frames:v 1 "$shot_out"
wait "$play_pid"
rc=$?
play_pid=
cat "$work/play.log"
check "wm-play exit code" [ $rc -eq 0 ]
json="$work/rec.mp4.json"
check "replay file written" [ -s "$json" ]
check "the key reached the model (action log)" grep -q '"up"' "$json"
check "the typed prompt reached the model" grep -q '"text":[[:space:]]*"red city"' "$json"
shot=$(ls "$work"/wm-play-*.png 2> /dev/null | head -1)
check "F12 wrote a PNG" sh -c "[ -n '$shot' ] && head -c 8 '$shot' | od -An -c | grep -q 'P   N   G'"
if command -v ffprobe > /dev/null 2>&1; then
    n=$(ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames -of csv=p=0 \
        "$work/rec.mp4")
    want=$(sed -n 's/^[[:space:]]*"frames":[[:space:]]*\([0-9]*\).*/\1/p' "$json")
    echo "recording: $n frames decoded, $want in the replay file"
    check "recording frame count" [ "$n" = "$want" ]
fi

check "Alt+2: the plugin's refusal is shown" \
    grep -q "AnnSA on refused: sa_dense_steps 2: need a fraction in \[0, 1\]" "$work/play.log"
check "Alt+1: TempCache on from a chunk boundary" \
    grep -q "TempCache on from frame [1-9][0-9]*: tempcache(0.60" "$work/play.log"
check "Alt+3: AnnCA on with TempCache" \
    grep -q "AnnCA on from frame [1-9][0-9]*: tempcache(0.60.*annca" "$work/play.log"
check "the replay file logs the switch" sh -c \
    "grep -q '\"tempcache\":[[:space:]]*false' '$json' && grep -q '\"tempcache\":[[:space:]]*true' '$json'"
check "saved a slot" grep -q "saved slot 0 at frame" "$work/play.log"
check "loaded the slot" grep -q "loaded slot 0" "$work/play.log"
check "reset" grep -q "reset to frame 0 (recording stopped)" "$work/play.log"
check "paused and resumed" sh -c "grep -q 'paused' '$work/play.log' && grep -q 'resumed' '$work/play.log'"
rec2=$(ls "$work"/wm-play-*.mp4.json 2> /dev/null | head -1)
check "a second recording (F10)" [ -n "$rec2" ]
if [ -n "$rec2" ]; then
    first2=$(sed -n 's/^[[:space:]]*"first_frame":[[:space:]]*\([0-9]*\).*/\1/p' "$rec2")
    echo "second recording starts at frame $first2"
    check "the second recording starts mid-stream" [ "${first2:-0}" -gt 0 ]
    "$play" --headless --replay "$rec2" --threads 1 --quiet
    check "the recording after a slot load replays bit-identical" [ $? -eq 0 ]
fi

# replay, headless then in the window: bit-identical on the same backend
"$play" --headless --replay "$json" --threads 1 --quiet
check "headless replay is bit-identical" [ $? -eq 0 ]
"$play" --replay "$json" --threads 1 --no-hud --quiet
check "windowed replay is bit-identical" [ $? -eq 0 ]

# the movement key moves the view: without it the replay differs, from the first frame it was held
first_up=$(sed -n 's/^[[:space:]]*"actions":[[:space:]]*\[\(.*\)\],*$/\1/p' "$json" | tr ',' '\n' |
    grep -n '"up"' | head -1 | cut -d: -f1)
first_up=$((first_up - 1))
sed 's/"up"/"-"/g' "$json" > "$work/no-up.json"
out=$("$play" --headless --replay "$work/no-up.json" --threads 1 --quiet 2>&1)
rc=$?
echo "$out"
check "without the key the frames differ" [ $rc -eq 3 ]
check "they differ from the first frame with the key ($first_up)" \
    sh -c "echo \"\$1\" | grep -q 'the first at frame $first_up\$'" _ "$out"
[ $fail -eq 0 ] && echo PASS xvfb_play
exit $fail
