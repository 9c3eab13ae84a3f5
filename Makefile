# medverify: `make run` runs the default workflow, `make test` the test suite.
# Both create or reuse .venv and install what they need.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
CORES ?= 2
# Local MedMNIST data directory: ../shared/data/medmnist where it exists (the project's
# machines, which have no network), else data/medmnist, where missing files are downloaded
# through medmnist (config key allow_download).
SHARED_DATA := $(abspath ../shared/data/medmnist)
DATA_DIR ?= $(if $(wildcard $(SHARED_DATA)/pneumoniamnist.npz),$(SHARED_DATA),$(abspath data/medmnist))
STAMP := $(VENV)/.installed
# DermaMNIST (in the default matrix) cannot be downloaded on offline machines: with
# OFFLINE=1 (the default when DATA_DIR is the shared folder) and no dermamnist.npz there,
# RetinaMNIST (5-class RGB) stands in. Add other overrides with RUN_CONFIG="instances=5".
OFFLINE ?= $(if $(filter $(SHARED_DATA),$(DATA_DIR)),1,0)
ifeq ($(OFFLINE)$(wildcard $(DATA_DIR)/dermamnist.npz),1)
DATASETS_OVERRIDE := datasets=[pneumoniamnist,retinamnist] allow_download=False
endif
# The one set of config overrides of `run` and `report` (the report must see the same
# matrix as the run it reports on).
RUN_OVERRIDES = data_dir=$(DATA_DIR) $(DATASETS_OVERRIDE) $(RUN_CONFIG)
export PIP_CONSTRAINT := $(abspath requirements/constraints.txt)

.PHONY: venv run report test test-slow test-slurm lint format clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements/base.txt requirements/nodeps.txt requirements/constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements/base.txt
	$(PY) -m pip install -q --no-deps -r requirements/nodeps.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/snakemake --workflow-profile profiles/default --cores $(CORES) \
		--config $(RUN_OVERRIDES)

# HTML report of the last `make run` (same config overrides).
report: $(STAMP)
	$(VENV)/bin/snakemake --workflow-profile profiles/default --cores $(CORES) \
		--config $(RUN_OVERRIDES) --report report.html

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	MEDVERIFY_DATA_DIR=$(DATA_DIR) $(PY) -m pytest -q

test-slow: $(STAMP)
	MEDVERIFY_DATA_DIR=$(DATA_DIR) $(PY) -m pytest -q -m slow

# The single-node Slurm test (root; apt-installs slurm-wlm and munge if missing). CI runs
# it as part of `make test` (CI=true); elsewhere it is skipped unless asked for here.
test-slurm: $(STAMP)
	MEDVERIFY_SLURM_TEST=1 MEDVERIFY_DATA_DIR=$(DATA_DIR) $(PY) -m pytest -q -m slurm tests/test_slurm.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf results logs .snakemake report.html
