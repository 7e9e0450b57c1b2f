# Every target sets itself up: a fresh clone needs only python3 (>= 3.11) and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
LAKE   ?= $(or $(LGS_LAKE),data/lake)
OUT    ?= out
EMBEDDED := lgs_fast/ingest/data/online_retail.parquet
BENCH_DSN := host=127.0.0.1 port=5432 user=postgres dbname=test

.DEFAULT_GOAL := help
.PHONY: help install analyze notebook test bench lint format clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# Each extra has its own stamp (analysis, tests, notebooks) over one environment.
# Without pip of its own when $(PYTHON) has one, which then installs into it (`pip --python`):
# a venv's own pip costs 4 s of a fresh clone's first `make analyze`. The dev tools add it.
$(BIN)/python:
	@echo "creating $(VENV) with $(PYTHON)…"
	@if $(PYTHON) -m pip --version >/dev/null 2>&1; then \
		$(PYTHON) -m venv --without-pip $(VENV); else $(PYTHON) -m venv $(VENV); fi
VENV_PIP = $(if $(wildcard $(BIN)/pip),$(BIN)/python -m pip,$(PYTHON) -m pip --python $(BIN)/python)

$(STAMP): pyproject.toml | $(BIN)/python
	[ -x $(BIN)/pip ] || $(BIN)/python -m ensurepip --default-pip >/dev/null
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install lgs_fast with its dev extras

# The report test opens the report in Debian's headless Chromium; install it when missing.
# Where apt cannot (no root, no network), that one test is skipped and says why.
$(VENV)/.chromium: | $(STAMP)
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the report test…"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium) >/dev/null 2>&1 \
		|| echo "chromium could not be installed: the browser test of the report will be skipped"; }
	@touch $@

# The analysis needs lgs_fast and its charts, none of the test tooling (pytest, pgserver, ruff,
# ipykernel…): on a fresh clone, installing those took most of the time to the report. Nor are
# the packages compiled to bytecode as they are installed (pip's default: 38 s against 23 s on
# this machine): Python compiles the few modules a run imports, once, as it imports them.
ANALYZE_STAMP := $(VENV)/.installed-analyze
$(ANALYZE_STAMP): pyproject.toml | $(BIN)/python
	@echo "make analyze: installing lgs_fast with its charts into $(VENV) (no test tools; under a minute from pip's cache, each package named as it comes)…"
	@$(VENV_PIP) install --disable-pip-version-check --progress-bar off --no-compile -e '.[charts]'
	@touch $@

# The shipped data goes only into a lake that does not exist yet: a lake the user imported or
# generated is analysed as it is, never written over.
analyze: $(ANALYZE_STAMP) ## Analyse the lake (export from PostgreSQL first if LGS_PG_DSN is set; a new lake starts from the shipped real data), write tables, charts and report to out/; options: ARGS="--as-of 2011-12-01 --bins 4"
	@if [ -n "$$LGS_PG_DSN" ]; then \
		echo "make analyze: exporting PostgreSQL into the lake $(LAKE)…"; \
		$(BIN)/lgs-fast export --lake $(LAKE); \
	elif [ -e "$(LAKE)/_manifest.json" ]; then \
		echo "make analyze: analysing the lake $(LAKE) as it is (source: $$($(BIN)/python -c 'import json, sys; print("; ".join(json.load(open(sys.argv[1]))["source"])[:200])' $(LAKE)/_manifest.json)); make clean to start again from the shipped data"; \
	else \
		echo "make analyze: importing the shipped real data into the new lake $(LAKE)…"; \
		$(BIN)/lgs-fast import $(EMBEDDED) --lake $(LAKE); \
	fi
	@echo "make analyze: lgs-fast analyze --lake $(LAKE) --out $(OUT) $(ARGS)"
	@$(BIN)/lgs-fast analyze --lake $(LAKE) --out $(OUT) $(ARGS)

# JupyterLab and a kernel in the project's own environment, so notebooks import this lgs_fast.
$(VENV)/.installed-notebook: pyproject.toml | $(BIN)/python
	@echo "make notebook: installing lgs_fast with JupyterLab into $(VENV)…"
	@$(VENV_PIP) install --quiet --disable-pip-version-check -e '.[notebook]'
	@touch $@

notebook: $(VENV)/.installed-notebook ## Open notebooks/ in JupyterLab in the project's environment (reads LGS_LAKE, else data/lake: run make analyze first)
	@[ -n "$$LGS_LAKE" ] || [ -f data/lake/_manifest.json ] || echo "make notebook: no data/lake yet and no LGS_LAKE: run make analyze first"
	$(BIN)/jupyter lab --ServerApp.root_dir=notebooks

# Two workers, a test file each at a time (pytest-xdist): Spark's agreement tests keep one JVM
# busy for minutes while the other worker runs the rest; one file's tests share its fixtures.
test: $(STAMP) $(VENV)/.chromium ## Run the test suite (installs chromium for the report test if it can)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

$(VENV)/.installed-bench: pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $@

# Export sizes: the quick run exports 1M lines, the full run 1M and 10M. The quick run writes
# to benchmarks/results/quick/ (ignored by git), so it never overwrites the full run's figures.
EXPORT_SIZES = $(if $(BENCH_FULL),1000000$(comma)10000000,1000000)
# The wholesale lakes (6,000 customers over two years, lgs-fast generate --customers 6000): the
# recommendations' worst case.
WHOLESALE_SIZES = $(if $(BENCH_FULL),1000000$(comma)10000000,1000000)
BENCH_OUT = benchmarks/results$(if $(BENCH_FULL),,/quick)
comma := ,

bench: $(VENV)/.installed-bench ## Benchmark the analysis (pandas, Polars, DuckDB; real data and 1M lines; BENCH_FULL=1 adds 10M and 100M), CLV, segment movement, recommendations (and their holdout against implicit), the forecast and the PostgreSQL export
	LGS_DUCKDB_MEMORY=$${LGS_DUCKDB_MEMORY:-4GB} $(BIN)/python -m benchmarks.run --out $(BENCH_OUT)
	LGS_DUCKDB_MEMORY=$${LGS_DUCKDB_MEMORY:-4GB} $(BIN)/python -m benchmarks.run --contenders clv-polars,clv-duckdb --out $(BENCH_OUT)/clv
	LGS_DUCKDB_MEMORY=$${LGS_DUCKDB_MEMORY:-4GB} $(BIN)/python -m benchmarks.run --contenders read-checks,analyze-polars,analyze-duckdb --out $(BENCH_OUT)/read_checks
	LGS_DUCKDB_MEMORY=$${LGS_DUCKDB_MEMORY:-4GB} $(BIN)/python -m benchmarks.run --contenders movement-polars,movement-duckdb,recommend-polars,recommend-duckdb,forecast --out $(BENCH_OUT)/features
	LGS_DUCKDB_MEMORY=$${LGS_DUCKDB_MEMORY:-4GB} $(BIN)/python -m benchmarks.run --contenders recommend-polars,recommend-duckdb,analyze-polars,analyze-duckdb --customers 6000 --sizes $(WHOLESALE_SIZES) --out $(BENCH_OUT)/wholesale
	$(BIN)/python -m benchmarks.recommend_holdout --out $(BENCH_OUT)/recommendations
	@if $(BIN)/python -c "import psycopg, os; psycopg.connect(os.environ.get('LGS_PG_DSN', '$(BENCH_DSN)'), connect_timeout=3).close()" 2>/dev/null; then \
		$(BIN)/python -m benchmarks.export_run --sizes $(EXPORT_SIZES) --out $(BENCH_OUT) --dsn "$${LGS_PG_DSN:-$(BENCH_DSN)}"; \
	else \
		echo "no PostgreSQL at $${LGS_PG_DSN:-$(BENCH_DSN)}: export benchmark skipped (set LGS_PG_DSN)"; \
	fi

lint: $(STAMP) ## ruff check and format check
	$(BIN)/ruff check lgs_fast tests benchmarks
	$(BIN)/ruff format --check lgs_fast tests benchmarks

format: $(STAMP) ## Format the code with ruff
	$(BIN)/ruff format lgs_fast tests benchmarks
	$(BIN)/ruff check --fix lgs_fast tests benchmarks

clean: ## Remove the virtual environment, lake and outputs
	rm -rf $(VENV) data/lake $(OUT) .pytest_cache .ruff_cache
