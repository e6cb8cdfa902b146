# `make train` / `make test` create .venv on first use, then run.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: train test test-fast benchmark course notebooks tensorboard clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

train: $(STAMP)          ## default experiment (embedded digits, no network); pass overrides with ARGS="..."
	$(PY) train.py $(ARGS)

test: $(STAMP)           ## the whole test suite
	$(PY) -m pytest -n auto --dist worksteal --durations=15 $(ARGS)

test-fast: $(STAMP)      ## the suite without tests marked slow
	$(PY) -m pytest -m "not slow" $(ARGS)

benchmark: $(STAMP)      ## dlcourse vs a bare PyTorch loop vs DataLoader+transforms
	$(PY) scripts/benchmark.py $(ARGS)

course: $(STAMP)         ## every course experiment, figures and reports into docs/course/ (QUICK=1: small budgets)
	$(PY) scripts/course.py $(if $(QUICK),--quick,) $(ARGS)

notebooks: $(STAMP)      ## execute notebooks/*.ipynb in full mode into outputs/notebooks/ (QUICK=1: small budgets; ARGS="03 07": some)
	$(PY) scripts/run_notebooks.py $(if $(QUICK),--quick,) $(ARGS)

tensorboard: $(STAMP)
	$(VENV)/bin/tensorboard --logdir outputs

clean:
	rm -rf outputs/*/ .pytest_cache
