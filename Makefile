# Hearth: `make demo` and `make test` set everything up themselves (virtualenv, dependencies,
# the pinned GGUF converter, the database).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.hearth-installed
REPO   ?= $(CURDIR)
NPROC  := $(shell nproc 2>/dev/null || echo 2)
# The CPU build of torch; a GPU host sets TORCH_SPEC (see README).
TORCH_SPEC ?= torch==2.13.0

.PHONY: install ldap demo test test-slow test-browser test-offline test-scaleout bundle serve bench bench-dataset bench-context bench-training bench-export bench-serving bench-onebox gpu-check lint clean

install: $(STAMP)

# llama-cpp-python (the version pyproject.toml pins) is compiled by packaging/llama-wheel.sh, without
# llama.cpp's AMX kernels (they crashed on some hosts), into a cache of its own; CMAKE_ARGS is passed through.
$(STAMP): pyproject.toml packaging/llama-wheel.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	@echo "Installing Hearth and its dependencies (llama-cpp-python compiles from source: ~8 min the first time)"
	WHEEL=$$(CMAKE_BUILD_PARALLEL_LEVEL=$(NPROC) bash packaging/llama-wheel.sh $(BIN)/python) && \
	  $(BIN)/python -m pip install --quiet --no-deps --force-reinstall "$$WHEEL"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m trainer.tools.converter install
	$(BIN)/python manage.py migrate --noinput -v0
	touch $(STAMP)

demo: install
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/python manage.py demo --repo "$(REPO)"

# The directory sign-in (the `ldap` extra): python-ldap compiles against libldap, and its test starts a
# real slapd; both come from Debian's packages, installed when missing (needs root then).
LDAP_STAMP := $(VENV)/.hearth-ldap
ldap: $(LDAP_STAMP)

$(LDAP_STAMP): $(STAMP)
	[ -x /usr/sbin/slapd ] && [ -e /usr/include/ldap.h ] && [ -e /usr/include/sasl/sasl.h ] || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slapd ldap-utils libldap2-dev libsasl2-dev; }
	$(BIN)/python -m pip install --quiet -e '.[dev,ldap]'
	touch $(LDAP_STAMP)

test: install ldap
	$(BIN)/python -m pytest

test-slow: install
	$(BIN)/python -m pytest -m slow

# The admin in Debian's Chromium (installed from Debian's packages when missing; needs root then);
# screenshots in test-artifacts/screenshots/.
test-browser: install
	command -v chromium >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }
	$(BIN)/python -m pytest -m browser tests/webui

# The pipeline, crash, lifecycle and serving tests on a real PostgreSQL and a real Redis broker, both
# installed from Debian's packages if missing and started (and stopped) by the script on free ports.
test-scaleout: install
	PY=$(BIN)/python bash .ci/scaleout.sh

serve: install
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/python manage.py serve

# The offline bundle: dist/hearth-<version>-<platform>.tar.gz (see packaging/build-bundle.sh);
# rebuilt only when a tracked file changed. TORCH_SPEC, CMAKE_ARGS and GPG_KEY are passed through.
VERSION  := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
PLATFORM := $(shell $(PYTHON) -c 'import sys, sysconfig; print(f"cp{sys.version_info[0]}{sys.version_info[1]}-" + sysconfig.get_platform().replace("-", "_"))' 2>/dev/null)
BUNDLE   := dist/hearth-$(VERSION)-$(PLATFORM).tar.gz

bundle: $(BUNDLE)

$(BUNDLE): $(STAMP) $(LDAP_STAMP) $(wildcard $(shell git ls-files 2>/dev/null))
	TORCH_SPEC="$(TORCH_SPEC)" PYTHON=$(BIN)/python bash packaging/build-bundle.sh

# Install the bundle in a network namespace with only loopback and run the appliance there (root).
test-offline: bundle
	bash packaging/test-offline.sh $(BUNDLE)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) instance .pytest_cache

bench-training: install
	$(BIN)/python benchmarks/bench_training.py

# On a CUDA host: train the micro model a few steps with full, LoRA and QLoRA, export each to GGUF and
# serve it with llama.cpp on the GPU, one line per check (docs/training.md). Without CUDA it says so.
gpu-check: install
	$(BIN)/python benchmarks/gpu_check.py

bench-export: install
	$(BIN)/python benchmarks/bench_export.py

bench-dataset: install
	$(BIN)/python benchmarks/bench_dataset.py

bench-context: install
	$(BIN)/python benchmarks/bench_context.py

bench-serving: install
	$(BIN)/python benchmarks/bench_serving.py $(BENCH_ARGS)

# The engine and a fine-tune on one box: disjoint CPU sets against shared cores.
bench-onebox: install
	$(BIN)/python benchmarks/bench_onebox.py

# Every benchmark, one JSON object per line.
bench: bench-dataset bench-context bench-training bench-export bench-serving bench-onebox
