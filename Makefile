# Thin wrappers over `python -m harness ...`; no hyperparameter lives here.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --quiet --disable-pip-version-check
DEVICE ?= cpu
# PyPI's Linux torch is the CUDA build (gigabytes of nvidia-* wheels): `make venv` takes the CPU build
# from TORCH_INDEX, unless pip can install it without any index (a local wheelhouse in pip's
# find-links, as on the project's own machines, which cannot reach that index). TORCH_INDEX= (empty):
# pip's own configuration decides. A torch already in the venv (a GPU user's CUDA build) is kept.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: help venv test smoke compare plan status bench-criterion bench-eval bench-data host-dirs \
	image data reproduce-baseline train-influencer doctor check-pins ci-upstream \
	image-stack upstream-imports test-image-stack image-oci test-image-oci

# Upstream backend: BACKEND=docker (default) runs `python -m harness` in the
# compose service SERVICE (gpu | cpu); BACKEND=upstream runs it here, in an
# environment with upstream's stack installed and ONEFORMER3D_ROOT set.
# EXECUTOR=slurm submits the runs as a Slurm job array from this machine's venv
# (a login node); each job runs in CONTAINER (apptainer:/path/image.sif) if given.
BACKEND ?= docker
SERVICE ?= gpu
SPEC ?= baselines/s3dis-area5.yaml
SEEDS ?=
EPOCHS ?=
EXECUTOR ?= local
CONTAINER ?=
GPUS ?= 1
ARM ?= influencer
COMPOSE ?= docker compose
export HOST_UID := $(shell id -u)
export HOST_GID := $(shell id -g)
ifeq ($(EXECUTOR),slurm)
HARNESS := $(PY) -m harness
else ifeq ($(BACKEND),docker)
HARNESS := $(COMPOSE) run --rm $(SERVICE) python -m harness
else ifeq ($(BACKEND),upstream)
HARNESS := $(PYTHON) -m harness
else
$(error BACKEND=$(BACKEND): use docker or upstream)
endif
# SEEDS empty: the spec's seeds (5 for s3dis-area5); SEEDS="0 1" runs a subset of them.
RUN_ARGS = $(strip --spec $(SPEC) $(if $(SEEDS),--seeds $(SEEDS)) $(if $(EPOCHS),--epochs $(EPOCHS)) \
	$(if $(filter-out 1,$(GPUS)),--gpus $(GPUS)) $(if $(filter slurm,$(EXECUTOR)),--executor slurm) \
	$(if $(CONTAINER),--container $(CONTAINER)))

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# The stamp re-runs the install only when the dependency files change.
$(VENV)/.installed: pyproject.toml requirements/torch-cpu.txt requirements/cpu.txt requirements/mm-registry.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	if $(PY) -c 'import torch' 2>/dev/null; then echo "keeping the venv's torch"; \
	elif [ -z "$(TORCH_INDEX)" ] || $(PIP) install --dry-run --no-index --no-deps -r requirements/torch-cpu.txt \
	    >/dev/null 2>&1; then $(PIP) install -r requirements/torch-cpu.txt; \
	else $(PIP) install --index-url $(TORCH_INDEX) -r requirements/torch-cpu.txt; fi
	$(PIP) install -r requirements/cpu.txt -e '.[dev]'
	$(PIP) install --no-deps -r requirements/mm-registry.txt
	touch $@

venv: $(VENV)/.installed  ## create the CPU virtualenv (.venv) and install everything

test: venv  ## run the test suite
	$(PY) -m pytest -q

# The smoke runs' records go to work_dirs/smoke (not committed): a repeated `make smoke` re-renders
# them, a fresh clone trains them; only the tables and plots land in results/smoke/.
smoke: venv  ## the whole pipeline on synthetic rooms, CPU, seconds: results/smoke/
	$(PY) -m harness run --spec baselines/smoke-native.yaml --runs work_dirs/smoke/runs --work-dirs work_dirs/smoke
	$(PY) -m harness compare --runs work_dirs/smoke/runs --experiment smoke-native --out results/smoke

plan: venv  ## the run matrix of SPEC with each run's state and estimated hours (RUNS=results/runs, SEEDS=)
	$(PY) -m harness plan $(strip --spec $(SPEC) --runs $(or $(RUNS),results/runs) $(if $(SEEDS),--seeds $(SEEDS)))

status: venv  ## every run of SPEC: pending / running (iteration, ETA) / finished / failed (RUNS=results/runs)
	$(PY) -m harness status --spec $(SPEC) --runs $(or $(RUNS),results/runs) $(if $(EPOCHS),--epochs $(EPOCHS))

compare: venv  ## tables + plots from results/runs into results/ (RUNS=, OUT=; EXPERIMENT=name if several)
	$(PY) -m harness compare $(strip --runs $(or $(RUNS),results/runs) --out $(or $(OUT),results) $(if $(EXPERIMENT),--experiment $(EXPERIMENT)))

bench-criterion: venv  ## time both criteria at S3DIS shapes (DEVICE=cpu|cuda)
	$(PY) -m harness bench criterion --device $(DEVICE)

bench-eval: venv  ## time the instance-AP evaluator (UPSTREAM=path to also time OneFormer3D's)
	$(PY) -m harness bench eval $(if $(UPSTREAM),--upstream-root $(UPSTREAM))

bench-data: venv  ## time prepare-data on generated raw rooms (MMDET3D=path to also time mmdet3d's converters)
	$(PY) -m harness bench data $(if $(MMDET3D),--mmdet3d-root $(MMDET3D))

# The containers run as the host user (compose.yaml): the volumes' folders must exist first, or
# Docker creates them as root and the container cannot write to them.
host-dirs:
	mkdir -p data work_dirs results
ifeq ($(BACKEND)$(EXECUTOR),dockerlocal)
doctor data reproduce-baseline train-influencer ci-upstream: host-dirs
endif
ifeq ($(EXECUTOR),slurm)
reproduce-baseline train-influencer: venv
endif

image:  ## build the compose image of SERVICE (gpu | cpu)
	$(COMPOSE) build $(SERVICE)

doctor:  ## check the environment of the upstream backend (imports, registry, spconv, upstream commit)
	$(HARNESS) doctor $(if $(filter gpu,$(SERVICE)),$(if $(filter docker,$(BACKEND)),--require-cuda))

data:  ## prepare + verify real S3DIS: make data S3DIS_RAW=/path/to/Stanford3dDataset_v1.2_Aligned_Version
	@test -n "$(S3DIS_RAW)" || { echo "error: set S3DIS_RAW=/path/to/Stanford3dDataset_v1.2_Aligned_Version" >&2; exit 2; }
ifeq ($(BACKEND),docker)
	$(COMPOSE) run --rm -v "$(abspath $(S3DIS_RAW))":/raw:ro $(SERVICE) python -m harness prepare-data --raw /raw --out data/s3dis
else
	$(HARNESS) prepare-data --raw "$(S3DIS_RAW)" --out data/s3dis
endif
	$(HARNESS) verify-data data/s3dis

reproduce-baseline:  ## upstream OneFormer3D, Hungarian arm, the spec's seeds [SEEDS="0 1"] [EPOCHS=512] [GPUS=1] [EXECUTOR=slurm]
	$(HARNESS) run $(RUN_ARGS) --arms hungarian

train-influencer:  ## the same model and seeds, Influencer arm (ARM=influencer | another arm of the spec) [EXECUTOR=slurm]
	$(HARNESS) run $(RUN_ARGS) --arms $(ARM)

ci-upstream:  ## the user's CI job: upstream code on CPU, a few iterations per arm, then compare
	$(HARNESS) run --spec baselines/ci-upstream-cpu.yaml --runs results/ci-upstream/runs
	$(HARNESS) compare --runs results/ci-upstream/runs --experiment ci-upstream-cpu --out results/ci-upstream

check-pins:  ## every pinned wheel of the images exists for their Python (3.10, x86_64); downloads ~1.5 GB
	@set -e; for f in docker/requirements/*.txt; do echo "== $$f"; \
	  $(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.10 \
	    --implementation cp --abi cp310 --abi abi3 --abi none --platform manylinux2014_x86_64 \
	    --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --platform linux_x86_64 \
	    -d .pins -r $$f; done; echo "all pins exist"

# The images cannot be built here (no Docker engine): replicate their Python stacks instead
# (docker/README.md says what that proves). Venvs in ~/.cache/influencerformer/replica (IMAGE_STACK_DIR),
# sdist-built wheels in ~/.cache/influencerformer/wheels (IMAGE_STACK_WHEELS): a fresh clone reuses both.
image-stack:  ## SERVICE's stack replicated (Python 3.10, as its Dockerfile installs), then doctor + every upstream import [MMDET3D_ROOT, ONEFORMER3D_ROOT]
	$(PYTHON) docker/image_stack.py build --service $(SERVICE)

upstream-imports:  ## re-derive docker/upstream-imports.txt (needs ONEFORMER3D_ROOT and MMDET3D_ROOT checkouts)
	@test -n "$(ONEFORMER3D_ROOT)" -a -n "$(MMDET3D_ROOT)" || { echo "error: set ONEFORMER3D_ROOT and MMDET3D_ROOT" >&2; exit 2; }
	$(PYTHON) docker/image_stack.py install --service cpu
	$(PYTHON) docker/image_stack.py derive-imports

test-image-stack: venv  ## the replica tests with both replicas required (CI runs it after make image-stack for gpu and cpu)
	IMAGE_STACK_REQUIRED=1 $(PY) -m pytest -q tests/test_image_stack.py

# docker/Dockerfile.cpu built for real without a Docker engine (buildah, root; docker/README.md says what
# stands in for what): its doctor, CMD and cpu job run in the image as uid 1000. The wheels come from the cpu
# replica (make image-stack SERVICE=cpu runs first if they are missing); the storage, kept as the build
# cache, is ~/.cache/influencerformer/oci. ONEFORMER3D_ROOT and MMDET3D_ROOT (git repositories holding
# the pinned commits) build it unchanged; without them (CI) three commands are replaced, and named.
image-oci:  ## build docker/Dockerfile.cpu with buildah, then CMD, doctor and the cpu job in it as uid 1000 [ONEFORMER3D_ROOT MMDET3D_ROOT]
	$(PYTHON) docker/image_oci.py build

test-image-oci: venv  ## a broken apt name, COPY path and removed pin each fail make image-oci, naming the step (CI runs it after image-oci)
	IMAGE_OCI_REQUIRED=1 $(PY) -m pytest -q tests/test_image_oci.py
