# The two commands of the README: `make run` and `make test`. Both work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
UV     := $(VENV)/.uv/bin/uv
PUYI   := $(VENV)/bin/puyi

.PHONY: run test lint setup install install-test bench browser clean

# uv resolves and installs this stack in seconds where pip backtracks for minutes; it comes from
# PyPI into a private prefix so nothing outside the clone is touched.
$(UV):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check --prefix $(VENV)/.uv uv
	@test -x $(UV) || { echo "uv was not installed into $(VENV)/.uv"; exit 1; }

install: $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --locked --python $(VENV)/bin/python

# ragas (extra `eval`) scores answer quality in the CI evaluation; `make run` does not need it.
install-test: $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --locked --extra test --extra eval --python $(VENV)/bin/python

setup: install
	$(PUYI) setup

run: setup
	$(PUYI) serve --sign-in

# The web chat's browser test drives Debian's Chromium (never a browser downloaded by a test tool);
# a CJK font makes its screenshot readable.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-wqy-zenhei >/dev/null; } || \
	  echo "chromium is not installed and cannot be installed here: the browser test will be skipped"

test: install-test browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/pytest

lint: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .

bench: $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --locked --extra test --extra eval --extra bench --python $(VENV)/bin/python
	$(PUYI) bench catalog
	$(PUYI) bench retrieval

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
