# Two commands: `make run` (serve on :8081 with the CPU engine) and `make test`.
# Both create .venv and install what is missing, Debian packages included (via apt-get when root).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Debian packages: fonts for the generated test documents; chromium for the web page tests (Playwright
# drives it); Tesseract's English and Russian models and its orientation model (osd: pages turned upright)
# (the engine is libtesseract inside the tesserocr wheel); fonts, poppler-utils (pdftotext) and qpdf for the result
# files (searchable PDF) and their tests; faketime for a replica whose clock runs ahead (tests/integration/test_ownership.py).
APT_PACKAGES := fonts-dejavu-core fonts-droid-fallback poppler-utils qpdf chromium tesseract-ocr-eng tesseract-ocr-rus \
	tesseract-ocr-osd faketime

.PHONY: run test unit lint typecheck compat image-check system-deps bench bench-vs-paddlex chaos clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

system-deps:
	@bash scripts/install_system_deps.sh $(APT_PACKAGES)

run: system-deps $(STAMP)
	$(PY) -m app

lint: $(STAMP)
	$(VENV)/bin/ruff check app tests scripts docker
	$(VENV)/bin/ruff format --check app tests scripts docker
	$(VENV)/bin/lint-imports
	bash scripts/check_secrets.sh
	$(VENV)/bin/hadolint Dockerfile Dockerfile.cpu
	$(VENV)/bin/shellcheck start.sh scripts/*.sh docker/*.sh

typecheck: $(STAMP)
	$(VENV)/bin/mypy app

# The base image runs Python 3.10: byte-compile app/ with it when this machine has one.
compat:
	@bash scripts/check_py310.sh

# The images' install step (docker/install_extras.sh) on the images' Python: a cached Python 3.10 copy of the
# GPU base image (docker/base-image-versions.txt) and a Python 3.11 one of the CPU image, each then serving pages
# through start.sh. Cached in .cache/image-sim; `make test` runs it too (it is part of the pytest suite).
image-check: system-deps $(STAMP)
	$(PY) -m pytest -q -rs tests/integration/test_image_install.py

# Whole test modules spread over two pytest-xdist workers (most tests wait on servers, leases and subprocesses, so
# two at a time keep both cores busy); the modules with the most slow tests start first (tests/conftest.py).
test: system-deps $(STAMP) lint typecheck compat
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=15

# The fast in-process tests (no servers): settings, conversions, the job runner.
unit: system-deps $(STAMP)
	$(PY) -m pytest -q tests/unit

bench: system-deps $(STAMP)
	$(PY) scripts/bench.py --write BENCHMARKS.md

bench-vs-paddlex: system-deps $(STAMP)
	$(PY) -m pip install --quiet "paddlex[serving]==3.3.13"
	$(PY) scripts/bench_vs_paddlex.py --write BENCHMARKS.md

# Three replicas on one SeaweedFS bucket (one with its wall clock 40 s ahead), a fault every ~10 s for 3 minutes
# while jobs keep coming: a replica killed (SIGTERM or SIGKILL) or frozen (SIGSTOP), or S3 down; fails when a job
# is lost, stuck, finished twice or its status goes back (~6 minutes).
chaos: system-deps $(STAMP)
	$(PY) scripts/chaos_replicas.py --faults kill,freeze,s3 --skew 40 --write BENCHMARKS.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache output .cache
