#!/usr/bin/env bash
# ci-check.sh: gate a deploy on revoctl's view of the platform. One line per check; the
# first failure stops the script with revoctl's own exit code, so a pipeline can tell a
# broken platform (1) from a broken configuration (2) or a back end it could not reach (4).
#
#   REVOCTL_CONFIG=/etc/revoctl/production.toml examples/ci-check.sh
#
# Settings (environment): REVOCTL (the command, default `revoctl`), MAX_SECRET_AGE (default
# 90d), SMOKE_KEY (the rate-limit key the smoke checks use and then reset, default ci-check).
# Needs jq.
#
# revoctl's exit codes, the same for every command:
#   0  success: healthy, allowed, found
#   1  a check failed: unhealthy (at or past --fail-on), denied by a rate limit
#   2  usage or configuration error: a typo in the config file fails here, before any call
#   3  not found: a secret, version, rule, breaker or revision
#   4  back end unavailable: Key Vault, Redis or the database unreachable, after retries
set -uo pipefail

REVOCTL=${REVOCTL:-revoctl}
MAX_SECRET_AGE=${MAX_SECRET_AGE:-90d}
SMOKE_KEY=${SMOKE_KEY:-ci-check}
command -v jq >/dev/null || { echo "ci-check: jq is required" >&2; exit 2; }
errors=$(mktemp)
trap 'rm -f "$errors"' EXIT

ok() { printf 'ok    %-10s %s\n' "$1" "$2"; }
fail() { printf 'FAIL  %-10s %s\n' "$1" "$2"; exit "$3"; }

# run CHECK ARGS...: `revoctl ARGS -o json` into $out. Any exit but 0 (or one listed in
# $ALLOW) fails CHECK with the code's meaning and revoctl's own one-line error.
run() {
    local check=$1 code
    shift
    out=$("$REVOCTL" "$@" -o json 2>"$errors")
    code=$?
    status=$code
    [[ $code -eq 0 || " ${ALLOW:-} " == *" $code "* ]] && return 0
    local meaning
    case $code in
        1) meaning="check failed" ;;
        2) meaning="usage or configuration error" ;;
        3) meaning="not found" ;;
        4) meaning="back end unavailable" ;;
        *) meaning="unexpected" ;;
    esac
    local said
    said=$(tail -n 1 "$errors")
    fail "$check" "exit $code, $meaning: ${said#error: }" "$code"
}

# The configuration loads: every key known, every value valid, every reference resolvable
# by name (exit 2 names the file and the key otherwise).
run config config show
ok config "$(jq -r '"valid: \(.config_file // "embedded defaults")\(if .profile then ", profile \(.profile)" else "" end)"' <<<"$out")"

# The database answers (exit 4 when it cannot be reached).
run database db ping
ok database "$(jq -r '"\(.backend) \(.server_version // "") answered in \(.latency_ms) ms"' <<<"$out")"

# Every migration shipped with this revoctl is applied: a gateway of this version needs them.
run migrations db current
pending=$(jq -r '.pending' <<<"$out")
[[ $pending == 0 ]] || fail migrations "$pending pending (at $(jq -r '.current // "none"' <<<"$out"), head $(jq -r '.head' <<<"$out")): run 'revoctl db migrate'" 1
ok migrations "at $(jq -r '.head' <<<"$out")"

# No breaker is held open by an operator: a trip left over from an incident would send every
# call to the fallbacks after the deploy.
run breakers breakers status
forced=$(jq -r '[.[] | select(.forced) | "\(.name) (\(.reason // "no reason given"))"] | join(", ")' <<<"$out")
[[ -z $forced ]] || fail breakers "forced open: $forced: 'revoctl breakers reset NAME' when it is over" 1
ok breakers "$(jq -r '"\(length) breakers, none forced open"' <<<"$out")"

# No secret has gone unrotated for longer than MAX_SECRET_AGE.
run secrets secrets list --older-than "$MAX_SECRET_AGE"
stale=$(jq -r '[.[].name] | join(", ")' <<<"$out")
[[ -z $stale ]] || fail secrets "unchanged for over $MAX_SECRET_AGE: $stale: 'revoctl secrets rotate NAME'" 1
ok secrets "none older than $MAX_SECRET_AGE"

# Each rate-limit rule answers from its store: one check for SMOKE_KEY, then that key reset,
# so the smoke test leaves no trace in the limits.
run limits limits rules
mapfile -t rules < <(jq -r '.[] | select(.enabled) | .name' <<<"$out")
for rule in "${rules[@]}"; do
    ALLOW=1 run limits limits test "$rule" --key "$SMOKE_KEY"
    [[ $status == 0 ]] || fail limits "$rule denied the first check of key $SMOKE_KEY: $(jq -c '.last' <<<"$out")" 1
    run limits limits reset "$rule" --key "$SMOKE_KEY"
done
ok limits "${#rules[@]} rules answered"

# Last, everything at once: any service degraded fails the gate (exit 1), naming it.
ALLOW=1 run health health --fail-on degraded
[[ $status == 0 ]] || fail health "$(jq -r '[.services | to_entries[] | select(.value.status != "healthy") | "\(.key) \(.value.status)\(if .value.reason then ": \(.value.reason)" else "" end)"] | join("; ")' <<<"$out")" 1
ok health "$(jq -r '.status' <<<"$out")"
