#!/usr/bin/env bash
# Remove a Hearth install; the instance directory (database, keys, models) is kept unless --purge.
#
#   uninstall.sh --prefix DIR [--purge] [--systemd-dir DIR]
#
# Installed as PREFIX/bin/hearth-uninstall. --purge also deletes HEARTH_HOME (read from
# PREFIX/etc/hearth.env): back it up first with `hearth backup`.
set -euo pipefail
PREFIX=""
PURGE=0
SYSTEMD_DIR=/etc/systemd/system
UNITS=(hearth-web hearth-worker hearth-engine)
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX=$2; shift 2 ;;
        --purge) PURGE=1; shift ;;
        --systemd-dir) SYSTEMD_DIR=$2; shift 2 ;;
        -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
done
if [ -z "$PREFIX" ] && [ -f "$(dirname "$0")/../INSTALLED" ]; then PREFIX=$(cd "$(dirname "$0")/.." && pwd); fi
[ -n "$PREFIX" ] && [ -f "$PREFIX/INSTALLED" ] || { echo "uninstall.sh: no Hearth install at '${PREFIX}' (pass --prefix)" >&2; exit 1; }
HOME_DIR=$(sed -n 's/^home=//p' "$PREFIX/INSTALLED")

if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now "${UNITS[@]}" 2>/dev/null || true
fi
removed_units=0
for unit in "${UNITS[@]}"; do
    if [ -f "$SYSTEMD_DIR/$unit.service" ] && grep -q "$PREFIX/" "$SYSTEMD_DIR/$unit.service"; then
        rm -f "$SYSTEMD_DIR/$unit.service"
        removed_units=1
    fi
done
if [ "$removed_units" = 1 ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi
rm -rf "$PREFIX"
echo "removed $PREFIX"
if [ "$PURGE" = 1 ] && [ -n "$HOME_DIR" ]; then
    rm -rf "$HOME_DIR"
    echo "removed the instance directory $HOME_DIR"
else
    echo "kept the instance directory $HOME_DIR (database, keys, models): reinstall with --home $HOME_DIR, or --purge"
fi
