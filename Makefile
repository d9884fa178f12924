# tilescan: one Makefile for set-up, tests, the demo and the benchmarks.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TOOLS := .tools
# The second Spark line the Spark-facing tests run on (make test): clusters people run today
# are on Spark 3.3-3.5 (HDInsight 5.1, Synapse, Databricks LTS, EMR) as well as 4.0.
SPARK35_VENV := .venv-spark35
SPARK35_PY := $(SPARK35_VENV)/bin/python
SPARK35 := pyspark==3.5.9 py4j==0.10.9.7
AZURITE := $(TOOLS)/node_modules/.bin/azurite-blob
DATA ?= $(or $(TILESCAN_DATA),../shared/data)
export TILESCAN_DATA := $(abspath $(DATA))
export SPARK_LOCAL_IP := 127.0.0.1
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))
export SPARK_CONF_DIR := $(abspath conf)
export PATH := $(abspath $(VENV))/bin:$(PATH)
PYTEST_ARGS ?=
# Test processes per Spark line. The tests mostly wait (on JVMs, spark-submit, pip, the
# emulator), so two halve the time even on two cores. Each file stays in one process, so
# that its module fixtures (a standalone cluster, an installed environment) start once.
TEST_WORKERS ?= 2
PYTEST := -m pytest -n $(TEST_WORKERS) --dist loadfile

.PHONY: setup test test-spark35 demo lint bench evaluate-model validate-int8 train-default train-classifier constraints clean

setup: $(VENV)/.installed $(AZURITE) $(SPARK35_VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	@command -v java >/dev/null 2>&1 || { echo "error: Java is missing: Spark needs a JDK 17 or 21 (Debian: apt-get install openjdk-17-jdk-headless)" >&2; exit 1; }
	@java -version >/dev/null 2>&1 || { echo "error: 'java' is on PATH but does not run; install a JDK 17 or 21" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

# The same tested set but for pyspark and py4j, in a venv of its own.
$(SPARK35_VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(SPARK35_VENV)
	$(SPARK35_PY) -m pip install --quiet --upgrade "pip>=23"
	grep -v -E '^(pyspark|py4j)==' constraints.txt > $(SPARK35_VENV)/constraints.txt
	$(SPARK35_PY) -m pip install --quiet -c $(SPARK35_VENV)/constraints.txt -e ".[dev]" $(SPARK35)
	touch $@

$(AZURITE): cluster_scripts/azurite-package.json
	@command -v npm >/dev/null 2>&1 || { echo "error: npm is missing: the Azure tests need Node.js 18+ for the Azurite emulator" >&2; exit 1; }
	mkdir -p $(TOOLS)
	cp cluster_scripts/azurite-package.json $(TOOLS)/package.json
	cd $(TOOLS) && npm install --no-audit --no-fund --loglevel=error
	touch $@

test: setup
	$(PY) $(PYTEST) $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-spark35

# The Spark-facing tests again, on the Spark 3.5 line.
test-spark35: $(SPARK35_VENV)/.installed
	PYSPARK_PYTHON=$(abspath $(SPARK35_PY)) PYSPARK_DRIVER_PYTHON=$(abspath $(SPARK35_PY)) \
	  PATH=$(abspath $(SPARK35_VENV))/bin:$(PATH) $(SPARK35_PY) $(PYTEST) -m spark -p no:cacheprovider $(PYTEST_ARGS)

demo: setup
	$(PY) -m app.demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/shellcheck cluster_scripts/*.sh cluster_scripts/hdinsight/*.sh .ci/run

bench: setup
	$(PY) -m benchmarks.run_all

evaluate-model: setup
	$(PY) -m app.evaluate_model --model models/default

# The default model's int8 copy validated on this CPU and recorded in the bundle, then again
# under the instruction sets of older x86 CPUs where CPUID faulting allows (localservices/cpus.py).
CPU_PROFILES := avx512-vnni avx512 avx2
validate-int8: setup
	$(PY) -m app.validate_int8 --model models/default --write
	@reason="$$($(PY) -m localservices.cpus --unavailable)"; \
	if [ -n "$$reason" ]; then echo "older CPUs not validated here: $$reason"; exit 0; fi; \
	for profile in $(CPU_PROFILES); do \
	  echo "== as on a CPU with $$profile"; \
	  $(PY) -m localservices.cpus $$profile $(PY) -m app.validate_int8 --model models/default --write || exit 1; \
	done

train-default: setup
	$(PY) -m app.train_detector --out models/default

train-classifier: setup
	$(PY) -m app.train --out models/classifier

constraints:
	$(PYTHON) -m venv /tmp/tilescan-constraints && /tmp/tilescan-constraints/bin/pip install -q -e ".[dev]" "numpy<1.24" "pyarrow<17" "onnx<=1.16.2" "tifffile<2025.5.21" "zarr<3" \
	  && /tmp/tilescan-constraints/bin/pip freeze --exclude-editable | grep -v -E '^(pip|setuptools|wheel)==' > constraints.txt

clean:
	rm -rf $(VENV) $(SPARK35_VENV) $(TOOLS) build *.egg-info .pytest_cache .hypothesis
