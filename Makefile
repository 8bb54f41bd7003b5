# fbnas: set-up and main jobs. `make search` runs the main job (the quick search-to-report pipeline);
# `make test` runs the tests; `make demo` trains, profiles and exports a small model.
VENV ?= .venv
PY := $(VENV)/bin/python
FBNAS := $(VENV)/bin/fbnas
DATA_DIR ?= /usr/share/datasets/fashion-mnist
OUT ?= runs

.PHONY: setup data demo search test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(VENV)/bin/pip install -q -c constraints.txt torch==2.13.0
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

# Fashion-MNIST from Debian's dataset-fashion-mnist (needs root and apt; otherwise point FBNAS_DATA at the IDX files)
data:
	@if [ -f $(DATA_DIR)/train-images-idx3-ubyte.gz ]; then echo "Fashion-MNIST: $(DATA_DIR)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else echo "Fashion-MNIST not found in $(DATA_DIR): apt-get install dataset-fashion-mnist (as root) or set FBNAS_DATA"; fi

# main job: train a small FBNet-style model on Fashion-MNIST for one epoch, profile it, export it
demo: setup data
	$(FBNAS) train --arch configs/fmnist_small.yaml --data fashion-mnist --epochs 1 --warmup-epochs 0 \
	  --out $(OUT)/demo --overwrite
	$(FBNAS) profile $(OUT)/demo/checkpoint.pt
	$(FBNAS) export $(OUT)/demo/checkpoint.pt --format onnx --out $(OUT)/demo/model.onnx

# main job: the quick pipeline on Fashion-MNIST: FBNetV1 DNAS search, retraining, a latency-matched random
# baseline, ONNX export and a report (resumable: run it again after Ctrl-C)
search: setup data
	$(FBNAS) run --config configs/dnas_fashion_mnist.yaml --preset quick --out $(OUT)/search --resume

test: setup data
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks tools

clean:
	rm -rf $(OUT) .pytest_cache
