# Each target sets up .venv itself, so on a fresh machine one command is enough.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo-deps demo serve web test test-fast bench lint format clean sample-tiles system-deps
WEB_BUNDLE := collateral/api/static/index.html

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

# The tests and the demo run their own Mosquitto broker; the tests start a private
# PostgreSQL cluster (initdb) when no server answers; the page is bundled with npm; the
# browser tests drive Debian's Chromium (no browser download); imagery over HTTP is
# served by nginx (Range requests) and a STAC API (stac-fastapi on pgstac, which needs
# PostGIS) started by the tests; the PDF reports are set by WeasyPrint (Pango) in Noto CJK;
# the benchmarks (and their smoke tests) load the API with wrk and read each process's
# peak memory with GNU time. All from Debian packages.
system-deps:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || missing="$$missing mosquitto"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || missing="$$missing nginx"; \
	ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1 || missing="$$missing postgresql-postgis"; \
	ls /usr/share/fonts/opentype/noto/NotoSansCJK-*.ttc >/dev/null 2>&1 || missing="$$missing fonts-noto-cjk"; \
	ldconfig -p 2>/dev/null | grep -q libpangoft2-1.0 || missing="$$missing libpango-1.0-0 libpangoft2-1.0-0"; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	test -x /usr/bin/time || missing="$$missing time"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; \
	fi

# The demo's broker, and what its PDF report is set with (Pango, Noto CJK).
demo-deps:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || missing="$$missing mosquitto"; \
	ls /usr/share/fonts/opentype/noto/NotoSansCJK-*.ttc >/dev/null 2>&1 || missing="$$missing fonts-noto-cjk"; \
	ldconfig -p 2>/dev/null | grep -q libpangoft2-1.0 || missing="$$missing libpango-1.0-0 libpangoft2-1.0-0"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; \
	fi

# The loan officer's page: map and chart libraries from npm, bundled by esbuild.
$(WEB_BUNDLE): web/package.json web/package-lock.json $(wildcard web/src/*) $(wildcard agri_common/locales/*.json)
	cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent
web: $(WEB_BUNDLE)

demo: $(STAMP) demo-deps
	rm -rf var/demo
	AGRI_DATABASE_URL=sqlite:///./var/demo/agri.db AGRI_DATA_DIR=./var/demo/data \
		bash -c '$(BIN)/agri parcels import sample_tiles/parcels.geojson && \
		$(BIN)/agri imagery run --inbox sample_tiles/scenes && \
		$(BIN)/agri parcels list && echo && \
		$(BIN)/agri parcels profile F-08 --png var/demo/F-08-profile.png && \
		$(BIN)/agri parcels profile T-05 --png var/demo/T-05-profile.png && echo && \
		$(BIN)/agri demo-livestock --seconds 6 && \
		$(BIN)/agri demo-valuation && \
		$(BIN)/agri demo-claims && \
		$(BIN)/agri demo-solar'

# The API on the demo data (run `make demo` first); prints a loan officer key to try it with.
serve: $(STAMP) $(WEB_BUNDLE)
	@test -f var/demo/agri.db || { echo "no demo data: run make demo first"; exit 1; }
	@echo "loan officer key for branch ANXI-01 (shown once):"
	@AGRI_DATABASE_URL=sqlite:///./var/demo/agri.db $(BIN)/agri keys create --role loan_officer --branch ANXI-01 --label make-serve
	@echo "try: curl -H 'Authorization: Bearer <key>' http://127.0.0.1:8000/v1/loans  (docs at /docs)"
	AGRI_DATABASE_URL=sqlite:///./var/demo/agri.db AGRI_DATA_DIR=./var/demo/data $(BIN)/agri serve

test: $(STAMP) system-deps $(WEB_BUNDLE)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Everything that needs no broker, database server, browser or long run: under a minute.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not broker and not postgres and not browser and not slow" $(PYTEST_ARGS)

bench: $(STAMP) system-deps
	$(BIN)/python bench/raster_pipeline.py
	$(BIN)/python bench/landsat_pipeline.py
	$(BIN)/python bench/stac_sync.py --rate 5m --later 3
	$(BIN)/python bench/history_growth.py
	$(BIN)/python bench/ingest_throughput.py
	$(BIN)/python bench/ingest_throughput.py --ingesters 2
	$(BIN)/python bench/api_load.py
	$(BIN)/python bench/book_growth.py
	$(BIN)/python bench/solar_daily.py
	$(BIN)/python bench/solar_daily.py --plants 2000 --history 30
	$(BIN)/python bench/imagery_scaleout.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

sample-tiles: $(STAMP)
	$(BIN)/python sample_tiles/generate.py
	$(BIN)/python sample_tiles/farms.py

clean:
	rm -rf $(VENV) var .pytest_cache web/node_modules collateral/api/static
