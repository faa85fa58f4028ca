# The commands of the README: `make demo`, `make notebook` and `make test`. All create the venv on first use.
PYTHON_BIN ?= python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
RUN_DIR    ?= runs/offline
PROFILE    ?= offline
FUSION_WEIGHT ?= 0.6

.PHONY: demo notebook lab report test lint venv data benchmarks clean-venv

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
	$(PY) -m papermill --log-output HAICAI_2026.ipynb $(RUN_DIR).executed.ipynb \
		-p PROFILE $(PROFILE) -p RUN_DIR $(RUN_DIR) -p FUSION_WEIGHT $(FUSION_WEIGHT)
	$(PY) -m emotion_fusion fuse --run-dir $(RUN_DIR) --weight $(FUSION_WEIGHT)
	$(MAKE) --no-print-directory report
	@echo "Executed notebook: $(RUN_DIR).executed.ipynb   report: $(RUN_DIR).html   run dir: $(RUN_DIR)"

# The shareable page RUN_DIR.html from the executed notebook: inline images, no progress bars, no CDN
# scripts (see tools/offline_report.html.j2).
report:
	$(PY) -m jupyter nbconvert --to html --template-file tools/offline_report.html.j2 --embed-images \
		$(RUN_DIR).executed.ipynb --output-dir $(dir $(RUN_DIR)) --output $(notdir $(RUN_DIR))

# JupyterLab on HAICAI_2026.ipynb (the URL it prints opens the notebook), bound to 127.0.0.1, the venv's
# python as the kernel (jupyter_client starts the `python3` kernel with the server's own interpreter).
# Datasets as for `make demo`: EMOTION_FUSION_DATA from the environment or `make notebook
# EMOTION_FUSION_DATA=...`, else data/. tools/jupyter/ turns off every call out (news, update check, PyPI
# extension search). Jupyter refuses root without --allow-root. Extra flags: LAB_ARGS="--port 8890 --no-browser".
notebook lab: venv
	JUPYTER_CONFIG_PATH=$(CURDIR)/tools/jupyter$(if $(JUPYTER_CONFIG_PATH),:$(JUPYTER_CONFIG_PATH)) \
		$(PY) -m jupyter lab --ip 127.0.0.1 --LabApp.default_url=/lab/tree/HAICAI_2026.ipynb \
		$(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

test: venv
	$(PY) -m pytest

# The layering of the package (pyproject.toml [tool.importlinter]): an import that runs upward fails here.
lint: venv
	$(VENV)/bin/lint-imports --no-cache

data: venv
	$(PY) -m emotion_fusion data

benchmarks: venv
	$(PY) benchmarks/branches.py --quick
	$(PY) benchmarks/fusion.py
	$(PY) benchmarks/stats_calibration.py
	$(PY) benchmarks/batch.py
	$(PY) benchmarks/dependence.py
	$(PY) benchmarks/train_throughput.py

clean-venv:
	rm -rf $(VENV)
