#!/bin/sh
# check.sh [WORKDIR] -- model-check toggle.pml with spin in both modes.
#
#   rule=off (-DRULE=0): spin MUST find an assertion violation (torn call).
#   rule=on  (-DRULE=1): spin MUST verify the model with 0 errors.
#   rule=on + SNAP_EARLY (snapshot before the flip): MUST find the torn call.
#   (sanity) rule=on + PROBE_WRITER_DONE: the writer must be able to finish
#            all updates, so the 0-error result is not vacuous.
#
# All generated files (pan.c, pan, *.trail) go to WORKDIR (default: a fresh
# mktemp -d, removed on success); the source tree is never written to.
# Exit status 0 iff every outcome is as expected.
set -u

SRC_DIR=$(cd "$(dirname "$0")" && pwd)
MODEL="$SRC_DIR/toggle.pml"

if [ $# -ge 1 ] && [ -n "$1" ]; then
    WORK=$1
    mkdir -p "$WORK" || exit 2
    CLEANUP=0
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/toggle-model.XXXXXX") || exit 2
    CLEANUP=1
fi
WORK=$(cd "$WORK" && pwd)

SPIN=${SPIN:-spin}
CC=${CC:-gcc}
command -v "$SPIN" >/dev/null 2>&1 || { echo "check.sh: spin not found" >&2; exit 2; }
command -v "$CC"   >/dev/null 2>&1 || { echo "check.sh: $CC not found" >&2; exit 2; }

# run_mode NAME DEFINES...  -> builds and runs pan in $WORK/NAME.
# Sets OUT (pan output file) and ERRS (number from "errors: N", or empty).
run_mode() {
    name=$1; shift
    dir="$WORK/$name"
    rm -rf "$dir" && mkdir -p "$dir" || return 2
    # Copy the model so that spin/pan name the trail after the local copy
    # (a trail is written next to the model path that spin was given).
    cp "$MODEL" "$dir/toggle.pml" || return 2
    OUT="$dir/pan.out"
    (
        cd "$dir" || exit 2
        "$SPIN" "$@" -a toggle.pml              >"$OUT" 2>&1 || exit 2
        "$CC" -O2 -DSAFETY -o pan pan.c         >>"$OUT" 2>&1 || exit 2
        ./pan -m100000                          >>"$OUT" 2>&1
        exit 0
    ) || { ERRS=; return 2; }
    ERRS=$(sed -n 's/.*errors: *\([0-9][0-9]*\).*/\1/p' "$OUT" | tail -n 1)
    # Depth-limit truncation would make "errors: 0" meaningless.
    if grep -q "max search depth too small" "$OUT"; then ERRS=; fi
    return 0
}

fail=0
dump() { echo "---- pan output ($1) ----"; cat "$OUT"; echo "---- end ----"; }

# 1. Snapshot rule off: a torn displacement read must be found.
run_mode rule_off -DRULE=0
if [ -n "$ERRS" ] && [ "$ERRS" -ge 1 ] && grep -q "assertion violated (lo==hi)" "$OUT"; then
    echo "rule=off: torn call found (expected)"
    # Human-readable counterexample for the curious.
    (cd "$WORK/rule_off" && "$SPIN" -DRULE=0 -t -p toggle.pml >trail.txt 2>&1)
else
    echo "rule=off: FAILED -- expected an assertion violation, got errors: ${ERRS:-?}"
    dump rule=off; fail=1
fi

# 2. Snapshot rule on (shared, failing, rolled-back grace periods): verified.
run_mode rule_on -DRULE=1
if [ "$ERRS" = "0" ]; then
    echo "rule=on: verified, 0 errors (expected)"
else
    echo "rule=on: FAILED -- expected errors: 0, got errors: ${ERRS:-?}"
    dump rule=on; fail=1
fi

# 3. The snapshot taken before the flip instead of after: a grace period that
#    started before the flip satisfies it, and the torn call is back.
run_mode snap_early -DRULE=1 -DSNAP_EARLY
if [ -n "$ERRS" ] && [ "$ERRS" -ge 1 ] && grep -q "assertion violated (lo==hi)" "$OUT"; then
    echo "rule=on, snapshot before the flip: torn call found (expected)"
else
    echo "snapshot before the flip: FAILED -- expected an assertion violation, got errors: ${ERRS:-?}"
    dump snap-early; fail=1
fi

# 4. Non-vacuity: with the rule on, the writer can complete every update.
run_mode rule_on_probe -DRULE=1 -DPROBE_WRITER_DONE
if [ -n "$ERRS" ] && [ "$ERRS" -ge 1 ] && grep -q "assertion violated 0 " "$OUT"; then
    echo "rule=on: writer completes all updates (non-vacuity sanity, expected)"
else
    echo "rule=on: FAILED -- writer-completion probe not reached (errors: ${ERRS:-?})"
    dump rule=on-probe; fail=1
fi

if [ "$fail" -eq 0 ] && [ "$CLEANUP" -eq 1 ]; then
    rm -rf "$WORK"
elif [ "$fail" -ne 0 ]; then
    echo "work files kept in $WORK"
fi
exit "$fail"
