# Two commands set everything up on a fresh machine with python3 and make:
#   make demo   creates .venv, installs the suite, runs `mm demo`
#   make test   creates .venv, installs the suite with its dev extra, runs the tests
# Installs are idempotent: a stamp records what was installed; a second run reinstalls nothing
# unless pyproject.toml or constraints.txt changed.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check
PYTEST_ARGS ?=
# uv installs the pinned stack in ~10 s where pip takes ~4 min. uv does not read pip's config, so
# pip's find-links (a local torch wheel on some machines) are passed on. pip is the fallback.
# --compile-bytecode: uv writes no .pyc by default, so every process would compile torch and MONAI
# from source (a cold `mm medical analyze`: ~40 CPU s without, ~16 with; pip compiles by default).
FIND_LINKS := $(foreach d,$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null),--find-links $(d))
define install_pinned
	$(PIP) install -q uv >/dev/null 2>&1 && \
	  $(BIN)/python -m uv pip install --python $(BIN)/python -q --compile-bytecode -c constraints.txt $(FIND_LINKS) -e "$(1)" || \
	  $(PIP) install -q -c constraints.txt -e "$(1)"
endef

.PHONY: demo test lint install install-dev bench clean browser pacs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(call install_pinned,.)
	touch $@

$(VENV)/.installed-dev: pyproject.toml constraints.txt | $(BIN)/python
	$(call install_pinned,.[dev])
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(BIN)/mm demo

test: $(VENV)/.installed-dev browser pacs
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The dialogue app's browser test drives Debian's Chromium; install it once if we may.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not found and cannot apt-get it: the browser test will be skipped"; fi; }

# The medical PACS tests run against a real Orthanc with its DICOMweb plugin; install them once if we may.
pacs:
	@{ command -v Orthanc >/dev/null 2>&1 && ls /usr/share/orthanc/plugins/libOrthancDicomWeb.so >/dev/null 2>&1; } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's orthanc and orthanc-dicomweb for the PACS tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc orthanc-dicomweb >/dev/null; \
	  else echo "Orthanc not found and cannot apt-get it: the PACS tests will be skipped"; fi; }

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

bench: $(VENV)/.installed-dev
	$(BIN)/mm bench fusion

clean:
	rm -rf $(VENV) runs build *.egg-info
