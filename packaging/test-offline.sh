#!/usr/bin/env bash
# `make test-offline`: install the bundle on a host with no network and run the appliance there.
#
#   packaging/test-offline.sh dist/hearth-<version>-<platform>.tar.gz [REPO]
#
# As root, inside a network namespace that has only loopback (unshare --net; ip link set lo up):
# extract the bundle, install it into a temporary prefix with --no-services, run
# `hearth check --deploy --fail-level WARNING` under the installed production settings, then
# `hearth demo --base hearth-micro` on REPO (default: this repository) to its JSON line; the network
# guard's log must show zero refused attempts. Prints "N passed, N failed" at the end.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ "${1:-}" = "--inside" ]; then
    shift
    INSIDE=1
else
    INSIDE=0
fi
TARBALL=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
REPO=${2:-$ROOT}

if [ "$INSIDE" = 0 ]; then
    [ "$(id -u)" = 0 ] || { echo "test-offline: needs root for unshare --net"; echo "0 passed, 1 failed"; exit 1; }
    [ -f "$TARBALL" ] || { echo "test-offline: no bundle at $TARBALL (make bundle)"; echo "0 passed, 1 failed"; exit 1; }
    exec unshare --net -- "$0" --inside "$TARBALL" "$REPO"
fi

ip link set lo up
WORK=$(mktemp -d /tmp/hearth-offline.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
PASSED=0
FAILED=0
START=$(date +%s)
ok() { PASSED=$((PASSED + 1)); echo "PASS $1"; }
bad() { FAILED=$((FAILED + 1)); echo "FAIL $1"; }
step() { printf '\n[offline %4ss] %s\n' "$(( $(date +%s) - START ))" "$*"; }

step "network namespace: $(ip -o link show | awk -F': ' '{print $2}' | tr '\n' ' ')"
if ip route get 192.0.2.1 >/dev/null 2>&1; then bad "the namespace has a route off this host"; else ok "only loopback"; fi

step "extract $(basename "$TARBALL")"
tar -C "$WORK" -xzf "$TARBALL"
BUNDLE=$(ls -d "$WORK"/hearth-*/)
[ "$(ls "$WORK" | wc -l)" = 1 ] && ok "one top folder: $(basename "$BUNDLE")" || bad "one top folder"

step "install (--no-services) into $WORK/prefix, instance $WORK/home"
# Nothing from this checkout or its venv may leak into the install.
env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME="$WORK" LANG=C.UTF-8 \
    "$BUNDLE/install.sh" --prefix "$WORK/prefix" --home "$WORK/home" --no-services \
    --hostname hearth.intranet.test --port 18443 > "$WORK/install.log" 2>&1
rc=$?
tail -n 25 "$WORK/install.log"
[ "$rc" = 0 ] && ok "install.sh" || { bad "install.sh (exit $rc)"; echo "$PASSED passed, $FAILED failed"; exit 1; }
HEARTH="$WORK/prefix/bin/hearth"
run() { env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME="$WORK" LANG=C.UTF-8 \
    HEARTH_ENGINE_PORT=18765 "$@"; }

[ "$(stat -c %a "$WORK/home")" = 700 ] && ok "home is 0700" || bad "home is $(stat -c %a "$WORK/home")"
[ "$(stat -c %a "$WORK/home/secret_key")" = 600 ] && ok "secret_key is 0600" || bad "secret_key mode"
[ "$(stat -c %a "$WORK/home/hearth.sqlite3")" = 600 ] && ok "database is 0600" || bad "database mode"
run "$HEARTH" shell -c "from trainer.models import BaseModel; assert BaseModel.objects.filter(slug='smollm2-135m-instruct', status='ready').exists()" \
    && ok "default base model registered from the bundle" || bad "default base model"

run "$HEARTH" shell -c "import ldap, django_auth_ldap" && ok "directory sign-in (the ldap extra) installed" || bad "ldap extra"

step "hearth check --deploy --fail-level WARNING (installed production settings)"
if run "$HEARTH" check --deploy --fail-level WARNING; then ok "check --deploy"; else bad "check --deploy"; fi

step "hearth demo --base hearth-micro --repo $REPO"
run "$HEARTH" demo --base hearth-micro --repo "$REPO" --port 18443 --max-steps 30 --preset quick \
    > "$WORK/demo.log" 2>&1
rc=$?
tail -n 20 "$WORK/demo.log"
LAST=$(tail -n 1 "$WORK/demo.log")
if [ "$rc" = 0 ] && printf '%s' "$LAST" | "$WORK/prefix/venv/bin/python" -c "import json, sys; d = json.load(sys.stdin); assert d['completion'] is not None and d['gguf']"; then
    ok "demo ends with its JSON line"
else
    bad "demo (exit $rc)"
    tail -n 30 "$WORK/home/logs/"*.log 2>/dev/null
fi

step "hearth serve: the admin over TLS, reached by another host name"
TOKEN=$(run "$HEARTH" token_create offline-dev --name ide 2>/dev/null | grep -o 'hth_[A-Za-z0-9_-]*' | head -1)
# Not through `run`: $! must be serve's own pid (a function in the background is a subshell).
env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME="$WORK" LANG=C.UTF-8 \
    HEARTH_ENGINE_PORT=18765 setsid "$HEARTH" serve --port 18443 > "$WORK/serve.log" 2>&1 &
SERVE=$!
for _ in $(seq 1 180); do grep -q "Hearth is serving" "$WORK/serve.log" && break; kill -0 "$SERVE" 2>/dev/null || break; sleep 1; done
grep -q "Hearth is serving" "$WORK/serve.log" && ok "hearth serve started" || { bad "hearth serve"; tail -n 30 "$WORK/serve.log"; }
TLS=(--silent --show-error --max-time 60 --cacert "$WORK/home/tls/cert.pem" --resolve hearth.intranet.test:18443:127.0.0.1)
code=$(curl "${TLS[@]}" -o /dev/null -w '%{http_code}' https://hearth.intranet.test:18443/admin/login/)
[ "$code" = 200 ] && ok "https://hearth.intranet.test:18443/admin/login/ answers 200 with a verified certificate" || bad "admin over TLS: $code"
curl "${TLS[@]}" -D - -o /dev/null https://hearth.intranet.test:18443/admin/login/ | grep -qi '^strict-transport-security:' \
    && ok "HSTS header" || bad "no HSTS header"
curl --silent --max-time 10 -o /dev/null http://127.0.0.1:18443/admin/login/ && bad "plain HTTP answered" || ok "plain HTTP refused"
answer=$(curl "${TLS[@]}" https://hearth.intranet.test:18443/v1/completions -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d '{"prompt": "def add(a, b):\n    ", "max_tokens": 8}')
printf '%s' "$answer" | "$WORK/prefix/venv/bin/python" -c "import json, sys; assert json.load(sys.stdin)['choices'][0]['text'] is not None" \
    && ok "a completion over TLS with a token" || bad "completion over TLS: $answer"
kill -TERM "$SERVE"
for _ in $(seq 1 40); do kill -0 "$SERVE" 2>/dev/null || break; sleep 1; done
STOPPED=$(( $(date +%s) - START ))
sleep 2
LEFT=$(pgrep -f "$WORK/prefix/venv" | wc -l)
[ "$LEFT" = 0 ] && ok "SIGTERM stops every service (serve exited at ${STOPPED}s)" || { bad "$LEFT processes left after SIGTERM"; pkill -KILL -f "$WORK/prefix/venv"; }

step "install.sh --upgrade (backup, migrate; the data and the token kept)"
env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME="$WORK" LANG=C.UTF-8 \
    "$BUNDLE/install.sh" --prefix "$WORK/prefix" --home "$WORK/home" --no-services --upgrade > "$WORK/upgrade.log" 2>&1
rc=$?
tail -n 5 "$WORK/upgrade.log"
[ "$rc" = 0 ] && ok "upgrade" || bad "upgrade (exit $rc)"
run "$HEARTH" shell -c "from inference.auth import token_authenticate; token_authenticate('Bearer $TOKEN')" \
    && ok "the token still authenticates after the upgrade" || bad "token lost in the upgrade"

step "network guard log"
GUARD="$WORK/home/logs/network-guard.log"
ATTEMPTS=$( [ -f "$GUARD" ] && wc -l < "$GUARD" || echo 0)
if [ "$ATTEMPTS" = 0 ]; then ok "zero outbound attempts"; else bad "$ATTEMPTS outbound attempts"; cat "$GUARD"; fi
run "$HEARTH" shell -c "from appliance.netguard import guard_active; assert guard_active()" \
    && ok "guard active in the installed appliance" || bad "guard not active"

step "backup, uninstall (data kept)"
run "$HEARTH" backup --output "$WORK/backup.tar" >/dev/null && ok "hearth backup" || bad "hearth backup"
"$WORK/prefix/bin/hearth-uninstall" --prefix "$WORK/prefix" >/dev/null && [ ! -e "$WORK/prefix" ] && [ -f "$WORK/home/secret_key" ] \
    && ok "uninstall keeps the instance" || bad "uninstall"

echo
echo "test-offline: $(( $(date +%s) - START )) s"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
