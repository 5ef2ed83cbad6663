#!/bin/sh
# abi_mismatch.sh WM_PLAY FAKE_PLUGIN NOT_A_PLUGIN - wm-play refuses a plugin of another ABI version and
# a library that is no wm plugin, with messages that say so, before touching any model.
set -u
play=$1 fake=$2 other=$3
fail=0
out=$("$play" --headless --plugin "$fake" --frames 1 2>&1); rc=$?
echo "$out"
[ "$rc" -eq 1 ] || { echo "FAIL: exit $rc, expected 1"; fail=1; }
echo "$out" | grep -q "ABI mismatch: the plugin speaks wm ABI version(s) 2; this host was built for version 1" ||
    { echo "FAIL: no ABI mismatch message"; fail=1; }
out=$(WM_PLUGIN="$fake" "$play" --headless --frames 1 2>&1); rc=$?
[ "$rc" -eq 1 ] && echo "$out" | grep -q "ABI mismatch" || { echo "FAIL: WM_PLUGIN not honoured"; fail=1; }
out=$("$play" --headless --plugin "$other" --frames 1 2>&1); rc=$?
echo "$out"
[ "$rc" -eq 1 ] && echo "$out" | grep -q "no symbol 'wm_get_api': not a wm plugin" || { echo "FAIL: non-plugin accepted"; fail=1; }
out=$("$play" --headless --plugin /nonexistent/libwm.so --frames 1 2>&1); rc=$?
[ "$rc" -eq 1 ] && echo "$out" | grep -q "cannot load the plugin" || { echo "FAIL: missing plugin"; fail=1; }
[ $fail -eq 0 ] && echo PASS abi_mismatch
exit $fail
