# Two commands for a fresh machine with Python 3.11 or 3.12 and pip:
#   make run   install and start the dashboard on the shipped model and sample cases
#   make test  install and run the whole test suite (ruff, import contracts, pytest)
# The interpreter: python3 when it is 3.11 or 3.12, else python3.12, else python3.11;
# name another with `make run PYTHON=/path/to/python3.12`. Only used to create .venv.
SUPPORTED_PYTHON := 3.11 or 3.12
IS_SUPPORTED      = -c 'import sys; sys.exit(sys.version_info[:2] not in ((3, 11), (3, 12)))'
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell for p in python3 python3.12 python3.11; do \
            "$$p" $(IS_SUPPORTED) >/dev/null 2>&1 && { echo "$$p"; break; }; done)
endif
VENV   ?= .venv
PY      = $(VENV)/bin/python
PORT   ?= 8501

.PHONY: run test install install-dev lint screenshots

$(VENV)/bin/activate:
	@if [ -z "$(PYTHON)" ]; then \
	  echo "error: no Python $(SUPPORTED_PYTHON) found (tried python3, python3.12, python3.11 on PATH);" \
	       "install one, or name it: make $(or $(MAKECMDGOALS),run) PYTHON=/path/to/python3.12" >&2; exit 2; fi
	@"$(PYTHON)" $(IS_SUPPORTED) >/dev/null 2>&1 || { \
	  echo "error: PYTHON=$(PYTHON) is not Python $(SUPPORTED_PYTHON) (or not found)" >&2; exit 2; }
	@echo "creating $(VENV) with $(PYTHON) ($$("$(PYTHON)" -c 'import platform; print(platform.python_version())'))"
	"$(PYTHON)" -m venv $(VENV)

# The package with its runtime dependencies (pyproject.toml reads the pins from requirements.txt).
$(VENV)/.installed: requirements.txt pyproject.toml | $(VENV)/bin/activate
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

# ... and the test and lint tools (extra "dev", requirements-dev.txt).
$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install
	$(VENV)/bin/streamlit run app.py --server.port $(PORT) --server.headless true --browser.gatherUsageStats false

lint: install-dev
	$(VENV)/bin/ruff check pfs_core pfs_ui tests pages app.py benchmarks
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

# Two pytest-xdist workers, one test file each at a time (module fixtures are built once), one torch
# thread per worker (tests/conftest.py); the five slowest tests are listed at the end; docs/testing.md has the figures.
test: install-dev lint
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=5

# The browser walks of the tumour-board issue at 1280x720 and 1920x1080, writing every page's screenshot to
# docs/screenshots (the same test runs in `make test`, with its pictures in a temporary folder).
screenshots: install-dev
	PFS_SCREENSHOT_DIR=$(CURDIR)/docs/screenshots $(PY) -m pytest -q -p no:xdist tests/e2e/test_tumour_board.py
