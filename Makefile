# Thin wrappers over `python -m harness ...`; no hyperparameter lives here.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --quiet --disable-pip-version-check
DEVICE ?= cpu

.PHONY: help venv test smoke compare bench-criterion bench-eval bench-data

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# The stamp re-runs the install only when the dependency files change.
$(VENV)/.installed: pyproject.toml requirements/cpu.txt requirements/mm-registry.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements/cpu.txt -e '.[dev]'
	$(PIP) install --no-deps -r requirements/mm-registry.txt
	touch $@

venv: $(VENV)/.installed  ## create the CPU virtualenv (.venv) and install everything

test: venv  ## run the test suite
	$(PY) -m pytest -q

smoke: venv  ## the whole pipeline on synthetic rooms, CPU, minutes: results/smoke/
	$(PY) -m harness run --spec baselines/smoke-native.yaml --runs results/smoke/runs
	$(PY) -m harness compare --runs results/smoke/runs --experiment smoke-native --out results/smoke

compare: venv  ## tables + plots from results/runs into results/ (EXPERIMENT=name if several)
	$(PY) -m harness compare --runs results/runs --out results $(if $(EXPERIMENT),--experiment $(EXPERIMENT))

bench-criterion: venv  ## time both criteria at S3DIS shapes (DEVICE=cpu|cuda)
	$(PY) -m harness bench criterion --device $(DEVICE)

bench-eval: venv  ## time the instance-AP evaluator (UPSTREAM=path to also time OneFormer3D's)
	$(PY) -m harness bench eval $(if $(UPSTREAM),--upstream-root $(UPSTREAM))

bench-data: venv  ## time prepare-data on generated raw rooms (MMDET3D=path to also time mmdet3d's converters)
	$(PY) -m harness bench data $(if $(MMDET3D),--mmdet3d-root $(MMDET3D))
