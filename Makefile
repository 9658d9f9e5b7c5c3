# The course's commands: `make course` runs it, `make test` tests it, `make lab` opens the
# lessons in JupyterLab. Each creates the virtual environment and installs the pinned versions
# first (only when something changed).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= course
DATA ?= auto
OUT ?=

.PHONY: help install course check test lab book format lessons lock notebooks solutions clean

help:
	@echo "make course [PROFILE=smoke|course|full] [DATA=auto|phantom|PATH] [OUT=DIR]"
	@echo "make check     quick: lint, the lessons' export, unit tests (no notebooks, no batch runs)"
	@echo "make test      install and run the whole test suite (lint, unit tests, notebooks)"
	@echo "make lessons   write the lessons' '# @save' cells into mri_helpers (after editing one)"
	@echo "make lab       open the lessons in JupyterLab, in the course's environment"
	@echo "make book      build the course as a website in book/_build/html (notebooks not re-run)"
	@echo "make lock      re-pin constraints.txt for Python 3.10-3.13 with uv (maintainers)"

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	touch $@

course: install
	$(BIN)/mri-course run --profile $(PROFILE) --data $(DATA) $(if $(OUT),--out $(OUT))

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

# For contributors, about four minutes: what `make test` runs but the notebooks and the tests
# marked `slow` (batch runs, long trainings, processes killed or several workers).
check: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mri-course export-lessons --check
	$(BIN)/python -m pytest tests -m "not slow" -q

# After editing a lesson's `# @save` cell: write mri_helpers from the lessons.
lessons: install
	$(BIN)/mri-course export-lessons

# JupyterLab from the course's environment: its default "Python 3" kernel has mri_helpers.
lab: install
	$(BIN)/jupyter lab --notebook-dir=notebooks

# The course as a static website: README as front page, the lessons and solutions with their
# committed outputs (never re-executed), the docs; warnings (a broken link) fail the build.
book: install
	$(BIN)/sphinx-build -q -b html -W --keep-going -c book . book/_build/html
	@echo "open book/_build/html/index.html"

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# One universal lock for Python 3.10 to 3.13 (markers where a package forks per version): uv
# keeps the pins already in constraints.txt wherever they still resolve. It needs only uv, so it
# runs even where the current pins no longer install.
lock:
	test -x $(BIN)/uv || { $(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install --quiet -c constraints.txt uv; }
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.10 \
		--no-emit-package mri-helpers --custom-compile-command "make lock" -o constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info book/_build

# Maintainers: run the worked solutions once at the course profile and commit their outputs.
solutions: install
	$(BIN)/mri-course publish-solutions

# Maintainers: refresh the outputs the committed notebooks carry, from one fresh course run.
notebooks: install
	rm -rf runs/publish
	$(BIN)/mri-course run --profile course --data $(DATA) --out runs/publish
	$(BIN)/mri-course publish runs/publish
	for direction in t1-to-t2 t2-to-t1; do mkdir -p published/$$direction && \
		cp runs/publish/models/$$direction/generator.keras runs/publish/models/$$direction/model.json published/$$direction/; done
	$(BIN)/mri-course evaluate --model runs/publish/models --data $(if $(filter auto,$(DATA)),course,$(DATA)) --json docs/course_metrics.json
	$(MAKE) solutions
