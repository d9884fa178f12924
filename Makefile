# tilescan: one Makefile for set-up, tests, the demo and the benchmarks.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TOOLS := .tools
# Two tested lines, each a venv with its own constraints file, both run by `make test`:
# - .venv: the pinned set with MXNet (training, the MXNet engine), on Spark 4.0 (constraints.txt);
#   MXNet 1.9.1 holds it to numpy < 1.24 and Python <= 3.11.
# - .venv-current: the scoring install on current packages, without MXNet (numpy 2, pyarrow,
#   onnx, tifffile and zarr 3 as released), on Spark 3.5, which clusters run today as well as 4.0
#   (HDInsight 5.1, Synapse, Databricks LTS, EMR) (constraints-current.txt).
CURRENT_VENV := .venv-current
CURRENT_PY := $(CURRENT_VENV)/bin/python
AZURITE := $(TOOLS)/node_modules/.bin/azurite-blob
# The viewer's JavaScript, copied into every run's viewer (scoring: viewer/assets.py finds it).
OPENSEADRAGON := $(TOOLS)/node_modules/openseadragon/build/openseadragon/openseadragon.min.js
# The browser the viewer's tests drive (Debian's chromium and its chromedriver).
CHROMIUM := $(TOOLS)/.chromium
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

.PHONY: setup test test-current demo lint bench evaluate-model validate-int8 train-default train-resnet train-classifier train-dense-classifier constraints \
	constraints-current clean

setup: $(VENV)/.installed $(AZURITE) $(CURRENT_VENV)/.installed $(CHROMIUM)

$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	@command -v java >/dev/null 2>&1 || { echo "error: Java is missing: Spark needs a JDK 17 or 21 (Debian: apt-get install openjdk-17-jdk-headless)" >&2; exit 1; }
	@java -version >/dev/null 2>&1 || { echo "error: 'java' is on PATH but does not run; install a JDK 17 or 21" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,train]"
	touch $@

$(CURRENT_VENV)/.installed: setup.cfg pyproject.toml constraints-current.txt
	$(PYTHON) -m venv $(CURRENT_VENV)
	$(CURRENT_PY) -m pip install --quiet --upgrade "pip>=23"
	$(CURRENT_PY) -m pip install --quiet -c constraints-current.txt -e ".[dev]"
	touch $@

$(AZURITE) $(OPENSEADRAGON) &: cluster_scripts/npm-package.json
	@command -v npm >/dev/null 2>&1 || { echo "error: npm is missing: Node.js 18+ installs the Azurite emulator and the viewer's OpenSeadragon" >&2; exit 1; }
	mkdir -p $(TOOLS)
	cp cluster_scripts/npm-package.json $(TOOLS)/package.json
	cd $(TOOLS) && npm install --no-audit --no-fund --loglevel=error
	touch $(AZURITE) $(OPENSEADRAGON)

$(CHROMIUM):
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
	  command -v apt-get >/dev/null 2>&1 || { echo "error: the viewer's tests need chromium and chromedriver (Debian: apt-get install chromium chromium-driver)" >&2; exit 1; }; \
	  sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends chromium chromium-driver; \
	fi
	mkdir -p $(TOOLS) && touch $@

test: setup
	TILESCAN_CONSTRAINTS=$(abspath constraints.txt) $(PY) $(PYTEST) $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-current

# Every test again on the current-packages line (the ones that need MXNet skip, saying so).
test-current: $(CURRENT_VENV)/.installed $(AZURITE) $(CHROMIUM)
	TILESCAN_CONSTRAINTS=$(abspath constraints-current.txt) \
	  PYSPARK_PYTHON=$(abspath $(CURRENT_PY)) PYSPARK_DRIVER_PYTHON=$(abspath $(CURRENT_PY)) \
	  PATH=$(abspath $(CURRENT_VENV))/bin:$(PATH) $(CURRENT_PY) $(PYTEST) -p no:cacheprovider $(PYTEST_ARGS)

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

# The default detector: padding-free (dense-exact at stride 4), from the classifier of its layers:
# 30 epochs, then 10 more as the end of a 40-epoch schedule (a warm restart at a low learning rate).
WIDTHS := 32,80,192
train-default: setup
	$(PY) -m app.train_detector --out models/default --architecture valid --widths $(WIDTHS) --epochs 30
	$(PY) -m app.train_detector --out models/default --architecture valid --widths $(WIDTHS) --epochs 40 --resume

# The ResNet-20 detector, the default before the padding-free one, and the classifier it starts from.
train-resnet: setup
	$(PY) -m app.train_detector --out models/resnet

train-classifier: setup
	$(PY) -m app.train --out models/classifier

train-dense-classifier: setup
	$(PY) -m app.train --out models/dense-classifier --architecture valid --widths $(WIDTHS) --epochs 20

# The two lines' constraints, made again from what pip resolves today.
constraints:
	rm -rf /tmp/tilescan-constraints && $(PYTHON) -m venv /tmp/tilescan-constraints \
	  && /tmp/tilescan-constraints/bin/pip install -q -e ".[dev,train]" "pyspark>=4,<4.1" "pyarrow<17" "tifffile<2025.5.21" "zarr<3" \
	  && /tmp/tilescan-constraints/bin/pip freeze --exclude-editable | grep -v -E '^(pip|setuptools|wheel)==' > constraints.txt

constraints-current:
	rm -rf /tmp/tilescan-constraints-current && $(PYTHON) -m venv /tmp/tilescan-constraints-current \
	  && /tmp/tilescan-constraints-current/bin/pip install -q -e ".[dev]" "pyspark>=3.5,<3.6" \
	  && /tmp/tilescan-constraints-current/bin/pip freeze --exclude-editable | grep -v -E '^(pip|setuptools|wheel)==' > constraints-current.txt

clean:
	rm -rf $(VENV) $(CURRENT_VENV) .venv-spark35 $(TOOLS) build *.egg-info .pytest_cache .hypothesis
