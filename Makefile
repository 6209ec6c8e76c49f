# The two README commands: `make run` and `make test`. Both create the virtual
# environment on first use, so a fresh clone needs nothing else.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/default.yaml
OUT ?= runs/default

.PHONY: run test test-all lint venv clean test-browser bench study constraints

# the versions pinned in constraints.txt (README "Dependencies" says how to upgrade them).
# --no-compile: Python byte-compiles a module when it is first imported; compiling every
# installed file up front (jax, scipy, dask, cvxpy, ...) cost 50 of the set-up's 80 CPU-s
# on a fresh clone (74 s user + 5.5 s sys with it, 17 s + 4.6 s without).
$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --no-compile -c constraints.txt -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/mfjko run $(CONFIG) --out $(OUT) --overwrite

# Headless-browser check of report.html: system Chromium + the playwright package
# (no `playwright install`: the test launches /usr/bin/chromium).
test-browser: $(STAMP)
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	$(BIN)/pip install -q playwright
	$(BIN)/python -m pytest tests/runner/test_report_browser.py -q -rs

# the budgeted suite (target ≤ 6 CPU-min, CONTRIBUTING.md); CI (.ci/run) runs exactly this
# and prints the 15 slowest tests
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest --durations=15

# everything: the `slow` tests, full fuzz examples and XLA optimizations included
test-all: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m ""

# The shipped studies (studies/*.yaml) on 2 local Dask workers, their pages, and
# docs/FINDINGS.md; a second `make study` resumes (finished points are kept). The 129³ ends
# of the paths to GD (path_to_gd_fine, path_to_gd_fast_fine: hours per point on a 2-core
# CPU) are not in the default list; on a device, or with time,
# `make study STUDIES="path_to_gd_fine path_to_gd_fast_fine"` adds them, and the tables
# and FINDINGS merge whichever were run.
STUDIES ?= regression regression_refine path_to_gd sphere teacher parametrizations gridscale orthogonal \
  wfr wfr_headtohead wfr_gridscale debias debias_fine pinning_sphere pinning_teacher path_to_gd_fast
STUDY_WORKERS ?= 2
study: $(STAMP)
	@for s in $(STUDIES); do \
	  if [ -f runs/studies/$$s/sweep.yaml ]; then R=--resume; else R=; fi; \
	  $(BIN)/mfjko sweep studies/$$s.yaml --out runs/studies/$$s --workers $(STUDY_WORKERS) $$R \
	    || exit 1; \
	  $(BIN)/mfjko study runs/studies/$$s || exit 1; \
	done
	$(BIN)/python scripts/path_to_gd_table.py runs/studies/path_to_gd runs/studies/path_to_gd_fine \
	  runs/studies/path_to_gd_fast runs/studies/path_to_gd_fast_fine \
	  > docs/findings/path_to_gd.md
	$(BIN)/python scripts/debias_table.py runs/studies/debias runs/studies/debias_fine \
	  > docs/findings/debias_sweep.md
	$(BIN)/python scripts/anisotropic_pinning.py runs/studies > docs/findings/pinning.md
	$(BIN)/python -m mfjko.study.findings runs/studies docs/FINDINGS.md

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_jko.py

# Re-pin constraints.txt: the newest versions pyproject.toml allows, in a fresh venv
constraints:
	rm -rf /tmp/mfjko-constraints-venv
	$(PY) -m venv /tmp/mfjko-constraints-venv
	/tmp/mfjko-constraints-venv/bin/pip install -q --upgrade pip
	/tmp/mfjko-constraints-venv/bin/pip install -q ".[test]"
	{ sed -n '1,3p' constraints.txt; /tmp/mfjko-constraints-venv/bin/pip freeze \
	  | grep -iv '^mfjko'; } > constraints.txt.new && mv constraints.txt.new constraints.txt
	rm -rf /tmp/mfjko-constraints-venv

clean:
	rm -rf $(VENV) runs
