# cliplab — the two commands of README.md work on a fresh clone: they build .venv when missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.cliplab-installed

.PHONY: test study bench toyclip clean-venv lint format lab explore

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

## make test: lint and format check (ruff), then the test suite (offline, CPU; two pytest-xdist workers,
## one per core, each test file on one worker so module fixtures such as the smoke study run once;
## after 25 failures it stops and prints them: that many means a cascade, a full disk say, not 25 bugs)
test: $(STAMP)
	$(VENV)/bin/ruff check cliplab tests benchmarks notebooks
	$(VENV)/bin/ruff format --check cliplab tests benchmarks notebooks
	$(PY) -m pytest -q -n 2 --dist loadfile --maxfail 25

## make study: the study on the embedded default (ToyCLIP, ToyWorld, digits)
study: $(STAMP)
	$(VENV)/bin/cliplab study --params "SEEDS=[0]"

## make lab: JupyterLab on working copies of the notebooks (lab/): double-click opens a notebook, outputs are kept
lab: $(STAMP)
	$(VENV)/bin/cliplab lab

## make explore: the run explorer as a web page (Voila) over the study's runs (runs/study/runs)
explore: $(STAMP)
	$(VENV)/bin/cliplab explore

## make bench: the CPU benchmarks of issue #7 and their tables (about 7.5 minutes once .venv exists; benchmarks/README.md)
bench: $(STAMP)
	$(PY) benchmarks/toyworld_generation.py --baseline benchmarks/baselines/render_whole_batch.py
	$(PY) benchmarks/train_step.py --device cpu
	$(PY) benchmarks/eval_share.py
	$(PY) benchmarks/report.py

## make toyclip: regenerate the shipped ToyCLIP checkpoint (about 40 minutes on 2 CPU cores)
toyclip: $(STAMP)
	$(VENV)/bin/cliplab pretrain-toy

clean-venv:
	rm -rf $(VENV)

## make format: apply ruff's fixes and formatting (what `make test` checks)
format: $(STAMP)
	$(VENV)/bin/ruff check --fix cliplab tests benchmarks notebooks
	$(VENV)/bin/ruff format cliplab tests benchmarks notebooks
