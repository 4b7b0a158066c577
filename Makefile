# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501
# Anything but loopback needs sign-in (README: Working as a team: signing in); dashboard.serve checks first.
ADDRESS ?= 127.0.0.1

.PHONY: run test lint bench-help

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

# Stamp files: reinstall only when a requirements file changed.
$(VENV)/.installed-run: requirements.txt | $(PY)
	$(PY) -m pip install -r requirements.txt
	touch $@

$(VENV)/.installed-test: requirements.txt requirements-test.txt | $(PY)
	$(PY) -m pip install -r requirements.txt -r requirements-test.txt
	# Reference readers for the interop round trips, without their pins on older numpy/OpenCV/pandas: the Label
	# Studio SDK's brush code (its ~45 dependencies are not needed for it) and datumaro, CVAT's format library.
	$(PY) -m pip install --no-deps label-studio-sdk==2.1.2 datumaro==1.13.12 cachetools==7.3.3 defusedxml==0.7.1 \
		imagesize==2.0.1 json-stream==2.5.1 json-stream-rs-tokenizer==0.5.4 lxml==6.1.3 orjson==3.13.0 \
		ruamel.yaml==0.19.1 shapely==2.2.0
	touch $@

# Browser tests use Debian's Chromium; no test tool downloads its own browser.
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = "0" ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
		else \
			echo "warning: /usr/bin/chromium is missing and you are not root; browser tests will be skipped"; \
		fi; \
	fi

# The store tests run on SQLite and on a real PostgreSQL server (a throwaway cluster per test session), from
# Debian's postgresql package; without it the PostgreSQL half is skipped with the reason.
postgresql:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		if [ "$$(id -u)" = "0" ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
		else \
			echo "warning: PostgreSQL is missing and you are not root; its store tests will be skipped"; \
		fi; \
	fi

run: $(VENV)/.installed-run
	$(PY) -m dashboard.serve --server.address $(ADDRESS) --server.port $(PORT)

test: $(VENV)/.installed-test chromium postgresql
	$(PY) -m pytest

lint: $(VENV)/.installed-test
	$(PY) -m ruff check .

.PHONY: chromium postgresql
