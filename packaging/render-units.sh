#!/usr/bin/env bash
# Render Hearth's systemd unit templates: render-units.sh PREFIX HOME USER GROUP OUTDIR
set -euo pipefail
[ $# -eq 5 ] || { echo "usage: $0 PREFIX HOME USER GROUP OUTDIR" >&2; exit 2; }
PREFIX=$1 HOME_DIR=$2 USER_NAME=$3 GROUP_NAME=$4 OUT=$5
SRC=$(cd "$(dirname "$0")" && pwd)/systemd
mkdir -p "$OUT"
for unit in "$SRC"/hearth-*.service; do
    sed -e "s#@PREFIX@#$PREFIX#g" -e "s#@HOME@#$HOME_DIR#g" -e "s#@USER@#$USER_NAME#g" -e "s#@GROUP@#$GROUP_NAME#g" \
        "$unit" > "$OUT/$(basename "$unit")"
    chmod 0644 "$OUT/$(basename "$unit")"
done
