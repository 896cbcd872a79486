# make demo: set up .venv and run the demo.  make test: set up .venv and run the tests.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.stamp-venv

# Also seen by the pip processes that build sdists (deepspeed) in isolated environments.
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt

.PHONY: venv demo test clean

venv: $(STAMP)

# Re-installs when pyproject.toml or constraints.txt change; deleting .venv deletes the stamp too.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	$(PIP) install -c constraints.txt torch==2.13.0
	$(PIP) install -c constraints.txt -e '.[test]'
	@if $(PIP) list 2>/dev/null | grep -qi '^nvidia-'; then \
		echo "error: CUDA wheels (nvidia-*) were installed; constraints.txt must pin torch" >&2; exit 1; fi
	@touch $@

demo: venv
	$(VENV)/bin/jukebox-dist run jobs/tiny.yaml

test: venv
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info
