# shellcheck shell=bash
# Helpers for scenario stages, sourced in the guest. Every step ends in one
# line of $VM_RESULTS/steps.txt: "PASS <step>" or "FAIL <step>: <detail>".

: "${VM_RESULTS:?}" "${VM_STATE:?}" "${VM_INPUT:?}"
export DEBIAN_FRONTEND=noninteractive
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# One line, bounded: details end up in CI logs.
oneline() {
    tr '\n' ' ' | tr -s ' ' | cut -c1-400
}

pass() {
    echo "PASS $*" | tee -a "$VM_RESULTS/steps.txt"
}

# fail STEP DETAIL...
fail() {
    local step=$1
    shift
    echo "FAIL $step: $(printf '%s' "$*" | oneline)" | tee -a "$VM_RESULTS/steps.txt"
}

# check STEP CMD...: PASS when CMD exits 0, else FAIL with its exit code and
# the tail of its output.
check() {
    local step=$1 out rc=0
    shift
    echo "+ $*"
    out=$("$@" 2>&1) || rc=$?
    printf '%s\n' "$out"
    if ((rc == 0)); then
        pass "$step"
    else
        fail "$step" "exit $rc: $(tail -n 5 <<<"$out")"
    fi
    return "$rc"
}

# wait_for SECS CMD...: retry CMD every half second until it succeeds.
wait_for() {
    local secs=$1 i
    shift
    for ((i = 0; i < secs * 2; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    "$@"
}
