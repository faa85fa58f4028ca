# The two commands of the README: `make demo` and `make test`. Both create the venv on first use.
PYTHON_BIN ?= python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
RUN_DIR    ?= runs/offline
PROFILE    ?= offline
FUSION_WEIGHT ?= 0.6

.PHONY: demo test venv data benchmarks clean-venv

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON_BIN) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

# Runs the offline profile through the notebook (papermill) into an executed copy and a run dir.
# Datasets: EMOTION_FUSION_DATA, else data/ (see data/README.md).
demo: venv
	$(PY) -m emotion_fusion data
	mkdir -p $(dir $(RUN_DIR))
	$(PY) -m papermill HAICAI_2026.ipynb $(RUN_DIR).executed.ipynb \
		-p PROFILE $(PROFILE) -p RUN_DIR $(RUN_DIR) -p FUSION_WEIGHT $(FUSION_WEIGHT)
	$(PY) -m emotion_fusion fuse --run-dir $(RUN_DIR) --weight $(FUSION_WEIGHT)
	@echo "Executed notebook: $(RUN_DIR).executed.ipynb   run dir: $(RUN_DIR)"

test: venv
	$(PY) -m pytest

data: venv
	$(PY) -m emotion_fusion data

benchmarks: venv
	$(PY) benchmarks/branches.py --quick
	$(PY) benchmarks/fusion.py
	$(PY) benchmarks/batch.py

clean-venv:
	rm -rf $(VENV)
