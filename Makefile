# make demo  -- train and evaluate the tiny model on generated demo data (CPU)
# make test  -- run the test suite
# Both create .venv (or reuse the active virtualenv) and install what they need.
# An installed torch is kept; where none is, the pinned CPU build is installed.

PYTHON ?= python3
VENV ?= $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV),.venv)
PY := $(VENV)/bin/python
TORCH_CPU_VERSION ?= 2.13.0
STAMP := $(VENV)/.mmseg_ptx-installed
# pytest-xdist workers: most tests start tools (imports, single-threaded)
# or train tiny models, so two share a 2-core machine well (CI: 19 -> 10
# minutes). TEST_WORKERS=auto takes one per core; 0 runs in one process.
TEST_WORKERS ?= 2

DEMO_DATA ?= data/demo
DEMO_WORK_DIR ?= work_dirs/demo
DEMO_CONFIG ?= configs/upernet_swin-nano_ptx-demo-128.py
DEMO_NUM ?= 800
DEMO_SIZE ?= 256

.PHONY: install test demo clean-demo

# Exit status 0 where the interpreter imports a torch >= 2.1.
HAS_TORCH = -c "import sys, torch; sys.exit(tuple(int(v) for v in \
	torch.__version__.split('.')[:2]) < (2, 1))" 2>/dev/null

# A new .venv sees the packages of $(PYTHON)'s installation where that has
# a torch >= 2.1 (a CUDA build in a conda env or the system's, say).
$(PY):
	$(PYTHON) -m venv $$($(PYTHON) $(HAS_TORCH) && \
		echo --system-site-packages) $(VENV)

$(STAMP): setup.cfg pyproject.toml | $(PY)
	# uv and some distributions make virtualenvs without pip.
	$(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip --upgrade
	$(PY) -m pip install -q --upgrade pip
	# PyPI's Linux torch is a multi-GB CUDA build: take the CPU build unless
	# a torch >= 2.1 (a GPU build, say) is already there. It is found where
	# pip already looks (a wheel folder, as on CI), else in PyTorch's CPU
	# index (whose macOS wheels are the CPU ones without the +cpu).
	$(PY) $(HAS_TORCH) || \
		$(PY) -m pip install -q torch==$(TORCH_CPU_VERSION)+cpu 2>/dev/null || \
		$(PY) -m pip install -q torch==$(TORCH_CPU_VERSION) \
			--index-url https://download.pytorch.org/whl/cpu \
			--extra-index-url https://pypi.org/simple
	$(PY) -m pip install -q -e ".[tests]"
	touch $@

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) tests

# The config's data_root, replaced by DEMO_DATA.
DEMO_DATA_OPTS = $(foreach split,train val test,\
	"$(split)_dataloader.dataset.data_root=$(DEMO_DATA)")

demo: $(STAMP)
	if test -f "$(DEMO_DATA)/train-rle.csv"; then \
		echo "Using the demo data in $(DEMO_DATA) (remove it to generate it anew)"; \
	else \
		$(PY) tools/make_demo_data.py --out "$(DEMO_DATA)" --num $(DEMO_NUM) \
			--seed 0 --size $(DEMO_SIZE); \
	fi
	$(PY) tools/dataset_stats.py "$(DEMO_DATA)" --workers 2
	$(PY) tools/train.py "$(DEMO_CONFIG)" --work-dir "$(DEMO_WORK_DIR)" \
		--cfg-options randomness.seed=0 $(DEMO_DATA_OPTS)
	# An earlier demo's pictures (perhaps of a version without the marker
	# that lets test.py write over them).
	rm -rf "$(DEMO_WORK_DIR)/test/panels"
	$(PY) tools/test.py "$(DEMO_CONFIG)" \
		"$$(ls -t "$(DEMO_WORK_DIR)"/best_dice_*.pth | head -n 1)" \
		--work-dir "$(DEMO_WORK_DIR)/test" --show-dir "$(DEMO_WORK_DIR)/test/panels" \
		--cfg-options $(DEMO_DATA_OPTS)
	@echo "Demo outputs: $(DEMO_WORK_DIR) (report: $(DEMO_WORK_DIR)/PERFORMANCE_SUMMARY.md)"

clean-demo:
	rm -rf "$(DEMO_WORK_DIR)"
