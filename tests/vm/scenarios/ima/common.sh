# shellcheck shell=bash
# Shared by the IMA scenario's stages: profiles and small helpers.

ctl=/usr/bin/bulwarkctl

# profile MODE [EXTRA]: the default profile (SSH open) with an [ima] section.
profile() {
    local mode=$1 extra=${2:-}
    local f=$VM_STATE/ima-$mode${extra:+-x}.toml
    cat >"$f" <<TOML
[profile]
name = "vm-ima-$mode"

[firewall]
public_tcp = [22]

[ima]
mode = "$mode"
template = "k3s-host"
appraise = ["BPRM_CHECK", "MODULE_CHECK", "FIRMWARE_CHECK"]
measure = true
extra_rules = [$extra]
# The harness's own stage scripts (run through bash, never executed) and
# the overlay test's lower and upper directories (reached only through the
# overlay mount, like containerd's snapshots).
scan_skip = ["/var/lib/bulwark-vm-run", "/var/lib/bwk-ovl"]
TOML
    echo "$f"
}

# runs STEP CMD...: CMD executes (exit 0).
runs() {
    check "$@"
}

# denied STEP PATH: executing PATH fails with EACCES (bash: exit 126, "Permission denied").
denied() {
    local step=$1 path=$2 out rc=0
    out=$("$path" 2>&1) || rc=$?
    echo "$step: exit $rc: $out"
    if ((rc == 126)) && grep -q 'Permission denied' <<<"$out"; then
        pass "$step (EACCES)"
    else
        fail "$step" "exit $rc: $out"
    fi
}

# event ID: the audit log has an event with this identifier.
has_event() {
    "$ctl" --json audit tail -n 500 | grep -q "\"event\": \"$1\""
}

# health_check NAME: "LEVEL REASON" of one health check (JSON: one check per
# object, fields in the order name, module, level, reason).
health_check() {
    "$ctl" --json health | tr -d '\n' | grep -o "\"name\": *\"$1\"[^}]*" |
        sed -E 's/.*"level": *"([A-Z]+)".*"reason": *"(.*)"[[:space:]]*$/\1 \2/'
}

# json_num KEY: a number field from JSON on stdin.
json_num() {
    grep -o "\"$1\": *[0-9]*" | head -1 | grep -o '[0-9]*$'
}
