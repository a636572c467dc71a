# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Both create .venv when it is missing and install platelab into it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.platelab-installed
# Debian fonts: a CJK font renders the province character of Chinese plates,
# DejaVu the Latin ones. Installed once, only where they are missing.
DEB_FONTS := fonts-wqy-microhei fonts-dejavu-core
FONT_CHECK := /usr/share/fonts/truetype/wqy/wqy-microhei.ttc
# Debian's Chromium, for the browser test of platelab serve's page (Playwright drives it:
# `playwright install` would download a browser build of its own, which CI cannot).
DEB_BROWSER := chromium
BROWSER_CHECK := /usr/bin/chromium

.PHONY: demo test lint format clean-venv system-deps

demo: $(STAMP)
	$(BIN)/platelab demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

system-deps:
	@missing=""; \
	[ -f $(FONT_CHECK) ] || missing="$(DEB_FONTS)"; \
	[ -x $(BROWSER_CHECK) ] || missing="$$missing $(DEB_BROWSER)"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; \
	  else SUDO=none; fi; \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$SUDO" != none ]; then \
	    echo "installing Debian packages:$$missing"; \
	    $$SUDO apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "warning: synthetic plates need a CJK font ($(DEB_FONTS)), the page test $(DEB_BROWSER); install:$$missing (Debian names)" >&2; \
	  fi; \
	fi

$(STAMP): pyproject.toml | system-deps
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	# torch first, on its own, so pip takes the pinned build from the local cache.
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e ".[dev,export,extras,serve]"
	@touch $(STAMP)

clean-venv:
	rm -rf $(VENV)
