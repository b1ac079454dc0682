# Two commands: `make demo` and `make test`. Both create .venv and install the project.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= profiles/local

.PHONY: demo test install dryrun clean-results

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: the CPU wheel here, the CUDA wheel from the registry on a GPU cluster
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[test,fsl]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --profile $(PROFILE)
	@echo
	@cat results/*/table.md
	@echo "Figures: results/*/figure.png   Per-fold tables: results/*/probe, results/*/similarity"

test: $(STAMP)
	$(BIN)/python -m pytest -q

dryrun: $(STAMP)
	$(BIN)/snakemake --profile $(PROFILE) -n

clean-results:
	rm -rf results/* .snakemake
