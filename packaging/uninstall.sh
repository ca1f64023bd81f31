#!/usr/bin/env bash
# Remove a Hearth install: exactly the files its installer wrote (PREFIX/.hearth-manifest), never through
# a symlink; anything else found in PREFIX is left and named. The instance directory (database, keys,
# models) is kept unless --purge.
#
#   uninstall.sh --prefix DIR [--purge] [--systemd-dir DIR]
#
# Installed as PREFIX/bin/hearth-uninstall. --purge also deletes HEARTH_HOME (the instance directory
# the installer created or marked as Hearth's): back it up first with `hearth backup`.
set -euo pipefail
PREFIX=""
PURGE=0
SYSTEMD_DIR=/etc/systemd/system
UNITS=(hearth-web hearth-worker hearth-engine)
PREFIX_MARK=.hearth-install
HOME_MARK=.hearth-instance
MANIFEST=.hearth-manifest
die() { echo "uninstall.sh: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX=$2; shift 2 ;;
        --purge) PURGE=1; shift ;;
        --systemd-dir) SYSTEMD_DIR=$2; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
done
marked() { [ -f "$1/$2" ] && [ ! -L "$1/$2" ]; }
if [ -z "$PREFIX" ] && marked "$(dirname "$0")/.." "$PREFIX_MARK"; then PREFIX=$(dirname "$0")/..; fi
[ -n "$PREFIX" ] && [ -d "$PREFIX" ] || die "no Hearth install at '${PREFIX}' (pass --prefix)"
PREFIX=$(cd -P -- "$PREFIX" && pwd -P)
marked "$PREFIX" "$PREFIX_MARK" || marked "$PREFIX" INSTALLED || die "no Hearth install at $PREFIX (no $PREFIX_MARK)"
HOME_DIR=""
marked "$PREFIX" INSTALLED && HOME_DIR=$(sed -n 's/^home=//p' "$PREFIX/INSTALLED")
PREFIX_CREATED=0
marked "$PREFIX" "$PREFIX_MARK" && PREFIX_CREATED=$(sed -n 's/^created=//p' "$PREFIX/$PREFIX_MARK")

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
if marked "$PREFIX" "$MANIFEST"; then
    LC_ALL=C sort -u "$PREFIX/$MANIFEST" > "$TMP/ours"
else
    # Installed before manifests: the paths that installer wrote, by name.
    (
        cd "$PREFIX"
        for part in venv static venv.previous static.previous; do
            [ -e "$part" ] || [ -L "$part" ] || continue
            find -P "$part" \( -type d -printf 'd %p\n' -o -printf 'f %p\n' \)
        done
        printf 'd %s\n' bin etc
        printf 'f %s\n' bin/hearth bin/hearth-uninstall etc/hearth.env README.md bundle.json INSTALLED
    ) | LC_ALL=C sort -u > "$TMP/ours"
fi

if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now "${UNITS[@]}" 2>/dev/null || true
fi
removed_units=0
for unit in "${UNITS[@]}"; do
    if [ -f "$SYSTEMD_DIR/$unit.service" ] && [ ! -L "$SYSTEMD_DIR/$unit.service" ] \
        && grep -qF "$PREFIX/" "$SYSTEMD_DIR/$unit.service"; then
        rm -f -- "$SYSTEMD_DIR/$unit.service"
        removed_units=1
    fi
done
if [ "$removed_units" = 1 ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi

# What is there now, walked without following a symlink, that the manifest names with the same kind
# (a directory the manifest names that is now a symlink is not Hearth's any more: it is left).
(cd "$PREFIX" && find -P . -mindepth 1 \( -type d -printf 'd %P\n' -o -printf 'f %P\n' \)) \
    | LC_ALL=C sort > "$TMP/present"
LC_ALL=C comm -12 "$TMP/present" "$TMP/ours" > "$TMP/remove"
# And the bytecode Python wrote later beside Hearth's own modules (__pycache__ in a directory of its).
awk 'NR == FNR { if ($1 == "d") ours[substr($0, 3)] = 1; next }
     { path = substr($0, 3); parent = path
       if ($1 == "d" && sub(/\/__pycache__$/, "", parent) && parent in ours) print
       else if ($1 == "f" && sub(/\/__pycache__\/[^\/]+\.pyc$/, "", parent) && parent in ours) print }' \
    "$TMP/ours" "$TMP/present" >> "$TMP/remove"
# A __pycache__ the manifest names is found both ways: remove each path once (rmdir fails on a second).
LC_ALL=C sort -u -o "$TMP/remove" "$TMP/remove"
(
    cd "$PREFIX"
    sed -n 's/^f //p' "$TMP/remove" | xargs -r -d '\n' rm -f --  # a symlink goes, never what it names
    sed -n 's/^d //p' "$TMP/remove" | LC_ALL=C sort -r | xargs -r -d '\n' rmdir --ignore-fail-on-non-empty --
)
left=$(cd "$PREFIX" && find -P . -mindepth 1 -maxdepth 3 -printf '%P\n' | LC_ALL=C sort | head -10)
if [ -z "$left" ] && [ "$PREFIX_CREATED" = 1 ]; then
    rmdir -- "$PREFIX"
    echo "removed $PREFIX"
elif [ -z "$left" ]; then
    echo "removed Hearth from $PREFIX (the directory was there before it, and stays)"
else
    echo "removed Hearth's files from $PREFIX; left what it did not install, such as:"
    printf '%s\n' "$left" | sed 's/^/    /'
fi

[ -z "$HOME_DIR" ] || [ ! -d "$HOME_DIR" ] || HOME_DIR=$(cd -P -- "$HOME_DIR" && pwd -P)
if [ "$PURGE" = 1 ] && [ -n "$HOME_DIR" ]; then
    if [ ! -d "$HOME_DIR" ]; then
        echo "no instance directory at $HOME_DIR"
    elif ! marked "$HOME_DIR" "$HOME_MARK"; then
        echo "uninstall.sh: $HOME_DIR has no $HOME_MARK (Hearth's mark on its instance directory): not deleted" >&2
        exit 1
    elif [ "$(sed -n 's/^created=//p' "$HOME_DIR/$HOME_MARK")" = 1 ]; then
        rm -rf --one-file-system -- "$HOME_DIR"  # rm never follows a symlink below what it deletes
        echo "removed the instance directory $HOME_DIR"
    else
        find -P "$HOME_DIR" -mindepth 1 -maxdepth 1 -exec rm -rf --one-file-system -- {} +
        echo "emptied the instance directory $HOME_DIR (it was there before Hearth, and stays)"
    fi
elif [ -n "$HOME_DIR" ]; then
    echo "kept the instance directory $HOME_DIR (database, keys, models): reinstall with --home $HOME_DIR, or --purge"
fi
