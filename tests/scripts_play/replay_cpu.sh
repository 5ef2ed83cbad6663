#!/bin/sh
# replay_cpu.sh WM_PLAY SOURCE_DIR - headless recordings replay bit for bit on the CPU: raw video and the
# replay file from an action script, an edited action log, seed or prompt is caught (exit 3, naming the
# first frame that differs), a recording with accelerations on replays with them (the file logs them;
# command-line flags do not override them; without them the frames differ), an MP4 recording decodes
# to the frame count its replay file states.
set -u
play=$1 src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tiny="$src/tests/scripts_play/tiny.json"
fail=0
check() { # check DESCRIPTION COMMAND...
    what=$1
    shift
    if ! "$@"; then
        echo "FAIL: $what"
        fail=1
    fi
}

# frames 0-4 (chunk 0) neutral, 5-12 (chunk 1) up, 13-15 up+jump, then left held
{
    echo '# one line per frame; the last is held'
    for i in 1 2 3 4 5; do echo -; done
    for i in 1 2 3 4 5 6 7 8; do echo up; done
    for i in 1 2 3; do echo up+jump; done
    echo left
} > "$work/walk.txt"
"$play" --headless --model "$tiny" --random-weights --backend cpu --threads 1 --quiet \
    --actions "$work/walk.txt" --frames 30 --prompt "a walk through the forest" --record "$work/a.rgb"
check "headless record" [ $? -eq 0 ]
check "replay file" [ -s "$work/a.rgb.json" ]
frames=$(sed -n 's/^[[:space:]]*"frames":[[:space:]]*\([0-9]*\).*/\1/p' "$work/a.rgb.json")
echo "recorded $frames frames"
check "whole chunks, at least the frames asked for" [ "${frames:-0}" -ge 30 ]
check "raw size" [ "$(wc -c < "$work/a.rgb")" -eq $((frames * 64 * 48 * 3)) ]
check "actions logged" grep -q '"up+jump"' "$work/a.rgb.json"

out=$("$play" --headless --replay "$work/a.rgb.json" --threads 1 --record "$work/b.rgb" 2>&1)
check "replay exit code" [ $? -eq 0 ]
echo "$out" | tail -1
check "replay reports bit-identical" sh -c "echo \"\$1\" | grep -q 'frames bit-identical'" _ "$out"
check "replayed video is byte-identical" cmp -s "$work/a.rgb" "$work/b.rgb"

# the actions of frames 13-15 changed (up+jump -> up): the replay must fail from frame 13, the first
# frame of their chunk (a chunk is denoised as a whole)
sed 's/"up+jump"/"up"/' "$work/a.rgb.json" > "$work/edit.json"
out=$("$play" --headless --replay "$work/edit.json" --threads 1 --quiet 2>&1); rc=$?
echo "$out"
check "edited actions: exit 3" [ $rc -eq 3 ]
check "edited actions: first bad frame" sh -c "echo \"\$1\" | grep -q 'the first at frame 13'" _ "$out"
# another seed or prompt
sed 's/"seed":[[:space:]]*"0"/"seed": "7"/' "$work/a.rgb.json" > "$work/seed.json"
"$play" --headless --replay "$work/seed.json" --threads 1 --quiet 2>/dev/null
check "edited seed: exit 3" [ $? -eq 3 ]
sed 's/"a walk through the forest"/"the red city at night"/' "$work/a.rgb.json" > "$work/prompt.json"
"$play" --headless --replay "$work/prompt.json" --threads 1 --quiet 2>/dev/null
check "edited prompt: exit 3" [ $? -eq 3 ]
# accelerations: logged in the replay file and applied by the replay, whatever the command line says
"$play" --headless --model "$tiny" --random-weights --backend cpu --threads 1 --quiet \
    --actions "$work/walk.txt" --frames 30 --prompt "a walk through the forest" \
    --tempcache --tc-threshold 0.6 --annca --ca-bits 4 --ca-tables 1 --ca-min-tokens 0 --record "$work/acc.rgb"
check "record with accelerations" [ $? -eq 0 ]
j="$work/acc.rgb.json"
check "the replay file logs them" sh -c "grep -q '\"tempcache\":[[:space:]]*true' '$j' &&
    grep -q '\"annca\":[[:space:]]*true' '$j' && grep -q '\"tc_threshold\":[[:space:]]*0.6' '$j'"
check "accelerations change the frames" sh -c "! cmp -s '$work/a.rgb' '$work/acc.rgb'"
out=$("$play" --headless --replay "$work/acc.rgb.json" --threads 1 --accel none --record "$work/acc2.rgb" 2>&1)
check "replay with accelerations: exit 0" [ $? -eq 0 ]
check "the flags are ignored, with a note" sh -c "echo \"\$1\" | grep -q 'acceleration flags are ignored'" _ "$out"
check "replayed video is byte-identical" cmp -s "$work/acc.rgb" "$work/acc2.rgb"
# a file written before ca_min_tokens existed (no such key: renamed here) replays as 0, AnnCA on any prompt
sed 's/"ca_min_tokens"/"unrelated_key"/' "$work/acc.rgb.json" > "$work/old.json"
check "the old-file copy lacks ca_min_tokens" sh -c "! grep -q ca_min_tokens '$work/old.json'"
"$play" --headless --replay "$work/old.json" --threads 1 --quiet --record "$work/acc3.rgb" 2>/dev/null
check "a replay file without ca_min_tokens replays byte-identical" cmp -s "$work/acc.rgb" "$work/acc3.rgb"
sed 's/"annca":[[:space:]]*true/"annca": false/' "$work/acc.rgb.json" > "$work/noca.json"
out=$("$play" --headless --replay "$work/noca.json" --threads 1 --quiet 2>&1); rc=$?
echo "$out"
check "edited acceleration log: exit 3" [ $rc -eq 3 ]
check "edited acceleration log: from frame 0" sh -c "echo \"\$1\" | grep -q 'the first at frame 0\$'" _ "$out"
sed 's/"sa_bits":[[:space:]]*\([0-9]\)/"sa_bits": "\1"/' "$work/acc.rgb.json" > "$work/badacc.json"
out=$("$play" --headless --replay "$work/badacc.json" --threads 1 --quiet 2>&1); rc=$?
echo "$out"
check "malformed acceleration entry: exit 1" [ $rc -eq 1 ]
check "malformed acceleration entry: named" sh -c "echo \"\$1\" | grep -q 'accel\[0\]'" _ "$out"
out=$("$play" --headless --model "$tiny" --random-weights --threads 1 --tempcache --tc-threshold 2>&1); rc=$?
check "an acceleration flag without its value: exit 2" [ $rc -eq 2 ]

# a damaged replay file is an error, not a crash
echo '{"format": "wm-play-replay"}' > "$work/bad.json"
out=$("$play" --headless --replay "$work/bad.json" --threads 1 --quiet 2>&1); rc=$?
echo "$out"
check "bad replay file: exit 1" [ $rc -eq 1 ]

# MP4 through FFmpeg: the recording decodes to the frame count of its replay file
if command -v ffprobe > /dev/null 2>&1; then
    out=$("$play" --headless --model "$tiny" --random-weights --backend cpu --threads 1 --quiet --frames 20 \
        --prompt "blue desert" --record "$work/c.mp4" 2>&1)
    if echo "$out" | grep -q "unsupported\|cannot"; then
        echo "no MP4 writer in this build: $out"
    else
        n=$(ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames -of csv=p=0 \
            "$work/c.mp4")
        want=$(sed -n 's/^[[:space:]]*"frames":[[:space:]]*\([0-9]*\).*/\1/p' "$work/c.mp4.json")
        echo "mp4: $n frames decoded, replay file says $want"
        check "mp4 frame count" [ "$n" = "$want" ]
        "$play" --headless --replay "$work/c.mp4.json" --threads 1 --quiet
        check "mp4 recording replays bit-identical" [ $? -eq 0 ]
    fi
else
    echo "ffprobe not installed: MP4 frame count not checked"
fi
[ $fail -eq 0 ] && echo PASS replay_cpu
exit $fail
