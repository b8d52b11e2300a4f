# medforensics: the two set-up commands are `make demo` and `make test`; both install first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# pytest workers; CI machines have 2 cores
PYTEST_WORKERS ?= 2

.PHONY: install demo test bench gallery lint format clean

install: $(STAMP)

# torch first, pinned: the CPU wheel on the machine satisfies it (any other version pulls CUDA)
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e ".[all,dev]"
	touch $(STAMP)

demo: install
	$(VENV)/bin/medforensics demo --out demo-out

test: install
	$(PY) -m pytest -m serial -q || [ $$? -eq 5 ]
	$(PY) -m pytest -n $(PYTEST_WORKERS) -m "not serial" -q

bench: install
	$(PY) benchmarks/run_all.py --quick

gallery: install
	$(PY) benchmarks/bench_dataset_builder.py gallery --out docs/gallery

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) demo-out .pytest_cache .mypy_cache .ruff_cache
