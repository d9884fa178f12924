# tilescan: one Makefile for set-up, tests, the demo and the benchmarks.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TOOLS := .tools
AZURITE := $(TOOLS)/node_modules/.bin/azurite-blob
DATA ?= $(or $(TILESCAN_DATA),../shared/data)
export TILESCAN_DATA := $(abspath $(DATA))
export SPARK_LOCAL_IP := 127.0.0.1
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))
export SPARK_CONF_DIR := $(abspath conf)
export PATH := $(abspath $(VENV))/bin:$(PATH)
PYTEST_ARGS ?=

.PHONY: setup test demo lint bench evaluate-model quantize-default train-default constraints clean

setup: $(VENV)/.installed $(AZURITE)

$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	@command -v java >/dev/null 2>&1 || { echo "error: Java is missing: Spark needs a JDK 17 or 21 (Debian: apt-get install openjdk-17-jdk-headless)" >&2; exit 1; }
	@java -version >/dev/null 2>&1 || { echo "error: 'java' is on PATH but does not run; install a JDK 17 or 21" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

$(AZURITE): cluster_scripts/azurite-package.json
	@command -v npm >/dev/null 2>&1 || { echo "error: npm is missing: the Azure tests need Node.js 18+ for the Azurite emulator" >&2; exit 1; }
	mkdir -p $(TOOLS)
	cp cluster_scripts/azurite-package.json $(TOOLS)/package.json
	cd $(TOOLS) && npm install --no-audit --no-fund --loglevel=error
	touch $@

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

demo: setup
	$(PY) -m app.demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/shellcheck cluster_scripts/*.sh cluster_scripts/hdinsight/*.sh .ci/run

bench: setup
	$(PY) -m benchmarks.run_all

quantize-default: setup
	$(PY) -m app.quantize --model models/default

evaluate-model: setup
	$(PY) -m app.evaluate_model --model models/default

train-default: setup
	$(PY) -m app.train --out models/default

constraints:
	$(PYTHON) -m venv /tmp/tilescan-constraints && /tmp/tilescan-constraints/bin/pip install -q -e ".[dev]" "numpy<1.24" "pyarrow<17" "onnx<=1.16.2" \
	  && /tmp/tilescan-constraints/bin/pip freeze --exclude-editable | grep -v -E '^(pip|setuptools|wheel)==' > constraints.txt

clean:
	rm -rf $(VENV) $(TOOLS) build *.egg-info .pytest_cache .hypothesis
