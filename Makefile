# Two commands: `make demo` and `make test`. Both create .venv and install the project
# from the lock (envs/constraints.txt: every transitive dependency at an exact version).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
LOCK := envs/constraints.txt
STAMP := $(VENV)/.installed
PROFILE ?= profiles/local
# uv resolves the lock (universal: Linux x86-64, Python 3.11-3.13); only `make lock` needs it
UV_VERSION := 0.13.9
LOCK_VENV := .venv-lock

# pybids' own BIDS example datasets (ds005, 7t_trt, synthetic, ds000117): public layouts nobody
# here wrote, the inputs of tests/test_bids_examples.py. They ship in pybids' sdist on PyPI
# (not in its wheel), fetched by pip and checked against this hash.
PYBIDS_SDIST := pybids==0.22.0
PYBIDS_SDIST_SHA256 := 98e7957e47c08d3c131de6f6cef629d009abce888849102b33820ca6a9930152
BIDS_EXAMPLES := tests/data/bids-examples

.PHONY: demo test lint install dryrun lock clean-results bids-examples profiles browser

$(STAMP): pyproject.toml $(LOCK)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet -c $(LOCK) pip
	# torch first: the CPU wheel here, the CUDA wheel from PyPI on a GPU cluster (same pin)
	$(PIP) install --quiet -c $(LOCK) "torch==2.13.0"
	# the locked setuptools builds the editable install (no unpinned build environment)
	$(PIP) install --quiet -c $(LOCK) setuptools
	$(PIP) install --quiet --no-build-isolation -c $(LOCK) -e ".[test,fsl,cluster]"
	$(BIN)/python envs/lock.py check --lock $(LOCK)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --profile $(PROFILE)
	@echo
	@cat results/*/table.md
	@for f in results/*/recovery.md; do [ -f "$$f" ] && { echo; cat "$$f"; }; done; true
	@echo "Figures: results/*/figure.png   Per-fold tables: results/*/probe, results/*/similarity, results/*/recovery"

# snakemake --lint exits non-zero on any lint; the grep also fails on a lint it only prints
lint: $(STAMP)
	@$(BIN)/snakemake --lint > $(VENV)/lint.txt 2>&1 || { cat $(VENV)/lint.txt; exit 1; }
	@! grep -q "^Lints for" $(VENV)/lint.txt || { cat $(VENV)/lint.txt; exit 1; }
	@echo "snakemake --lint: clean"

$(BIDS_EXAMPLES)/.complete: | $(STAMP)
	rm -rf $(BIDS_EXAMPLES) $(BIDS_EXAMPLES).tmp
	mkdir -p $(BIDS_EXAMPLES).tmp
	$(PIP) download --quiet --no-deps --no-binary :all: "$(PYBIDS_SDIST)" -d $(BIDS_EXAMPLES).tmp
	echo "$(PYBIDS_SDIST_SHA256)  $$(ls $(BIDS_EXAMPLES).tmp/pybids-*.tar.gz)" | sha256sum -c --quiet
	tar -xzf $(BIDS_EXAMPLES).tmp/pybids-*.tar.gz -C $(BIDS_EXAMPLES).tmp --wildcards \
		'*/tests/data/ds005/*' '*/tests/data/7t_trt/*' '*/tests/data/synthetic/*' '*/tests/data/ds000117/*'
	mv $(BIDS_EXAMPLES).tmp/pybids-*/tests/data $(BIDS_EXAMPLES)
	rm -rf $(BIDS_EXAMPLES).tmp
	touch $@

bids-examples: $(BIDS_EXAMPLES)/.complete

# Debian's Chromium for the report test (tests/test_workflow.py drives it with Playwright;
# Playwright's own browser download is not used). Installed when missing and apt-get can
# (root, as in CI); elsewhere the test skips, and under CI=true it fails.
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "no $(CHROMIUM) (apt-get install chromium): the browser test of the report will skip"

# one worker per core; tests that share one built run (xdist_group) stay on one worker
test: lint bids-examples browser
	$(BIN)/python -m pytest -q -n auto --dist loadgroup --durations=15

# Named profiles, so `snakemake --profile slurm` / `--profile local` work from any folder:
# links in Snakemake's user profile folder (XDG: $$XDG_CONFIG_HOME/snakemake, by default
# ~/.config/snakemake) to this checkout's profiles/, so an edit of profiles/slurm applies.
PROFILE_HOME ?= $(or $(XDG_CONFIG_HOME),$(HOME)/.config)/snakemake
profiles:
	mkdir -p "$(PROFILE_HOME)"
	for p in local slurm; do ln -sfn "$(abspath profiles)/$$p" "$(PROFILE_HOME)/$$p"; done
	@echo "installed: $(PROFILE_HOME)/local -> $(abspath profiles)/local, $(PROFILE_HOME)/slurm -> $(abspath profiles)/slurm"

dryrun: $(STAMP)
	$(BIN)/snakemake --profile $(PROFILE) -n

# Regenerate the lock from pyproject.toml's ranges, then the conda env files from the lock.
lock:
	test -x $(LOCK_VENV)/bin/uv || { $(PYTHON) -m venv $(LOCK_VENV) && \
		$(LOCK_VENV)/bin/python -m pip install --quiet "uv==$(UV_VERSION)" "packaging==25.0"; }
	$(LOCK_VENV)/bin/uv pip compile pyproject.toml envs/lock-tools.in --extra test --extra fsl --extra cluster \
		--universal --python-version 3.11 --no-header --output-file $(LOCK)
	$(LOCK_VENV)/bin/python envs/lock.py conda --lock $(LOCK)

clean-results:
	rm -rf results/* .snakemake
