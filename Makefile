# conveyor — `make demo` ingests examples/ and searches them; `make test` runs the suite.
# Both work on a fresh Debian machine with Python 3.11: they install what they need.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp-install
APT_STAMP := $(VENV)/.stamp-apt
# CPU build of PyTorch; an unpinned torch pulls a multi-GB CUDA build.
TORCH  ?= torch==2.13.0
# Debian packages: Tesseract for OCR; espeak-ng speaks the test recordings; PostgreSQL
# for the queue and catalog tests; Chromium and its driver for the status page test.
APT_PACKAGES ?= tesseract-ocr tesseract-ocr-eng tesseract-ocr-osd espeak-ng postgresql \
	chromium chromium-driver
DEMO_HOME ?= conveyor-data
# Optional backends the tests exercise; a user picks the extras they need.
EXTRAS ?= audio,onnx,openvino,server,postgres,aws,chroma,qdrant,otel,llm,dev

# What the product itself needs to read every format it claims: Tesseract (with the
# orientation data) for images and scanned pages. `make demo` installs it.
PRODUCT_APT ?= tesseract-ocr tesseract-ocr-eng tesseract-ocr-osd

.PHONY: install demo test test-unit lint bench clean system-deps product-deps

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV) || { apt-get update && apt-get install -y python3-venv && $(PYTHON) -m venv $(VENV); }

# The audio extra's resemblyzer needs webrtcvad, which PyPI has only as source: a C compiler
# and Python's headers build it.
BUILD_APT ?= gcc python3-dev

$(STAMP): pyproject.toml | $(VENV)/bin/python
	@if ! command -v gcc >/dev/null 2>&1 || ! $(BIN)/python -c "import os, sys, sysconfig; \
		sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))"; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $(BUILD_APT); \
		else \
			echo "note: the audio extra builds webrtcvad: sudo apt-get install -y $(BUILD_APT)"; \
		fi; \
	fi
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]' "$(TORCH)"
	touch $@

install: $(STAMP)

system-deps: | $(VENV)/bin/python
	@if [ -n "$(APT_PACKAGES)" ] && [ "$$(cat $(APT_STAMP) 2>/dev/null)" != "$(APT_PACKAGES)" ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $(APT_PACKAGES) \
		&& echo "$(APT_PACKAGES)" > $(APT_STAMP); \
	fi

product-deps:
	@if ! command -v tesseract >/dev/null 2>&1 || ! tesseract --list-langs 2>/dev/null | grep -qx osd; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $(PRODUCT_APT); \
		else \
			echo "note: images and scanned pages need Tesseract: sudo apt-get install -y $(PRODUCT_APT)"; \
		fi; \
	fi

demo: install product-deps
	$(BIN)/conveyor ingest examples/ --home $(DEMO_HOME)
	$(BIN)/conveyor search "how do I rotate the keys?" -k 3 --home $(DEMO_HOME)
	$(BIN)/conveyor search "can I get my money back after a month?" -k 3 --home $(DEMO_HOME)
	$(BIN)/conveyor search "why did the database stop accepting writes?" -k 3 --home $(DEMO_HOME)

test: install system-deps
	@# the default model exported once into the user's cache, before the tests'
	@# processes (several start at once) would each do it on first use
	$(BIN)/python -c "from conveyor.components import Components; from conveyor.settings import Settings; Components(Settings()).local_embedder.load()"
	$(BIN)/python -m pytest

test-unit: install
	$(BIN)/python -m pytest tests/unit

lint: install
	$(BIN)/ruff check conveyor tests bench
	$(BIN)/ruff format --check conveyor tests bench
	$(BIN)/mypy conveyor

bench: install
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/workers.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/ocr.py
	$(BIN)/python bench/embed_server.py
	$(BIN)/python bench/audio.py
	$(BIN)/python bench/speakers.py
	$(BIN)/python bench/lambda_batch.py

clean:
	rm -rf $(VENV) $(DEMO_HOME) .pytest_cache .mypy_cache .ruff_cache *.egg-info
