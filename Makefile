PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean install

$(STAMP): pyproject.toml scripts/install_system_packages.sh
	bash scripts/install_system_packages.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# The viewer page's Aladin Lite (npm, pinned by viewer/package-lock.json) copied into the package's static files
VIEWER_BUNDLE := src/romanflow/services/static/vendor/aladin.js
$(VIEWER_BUNDLE): viewer/package.json viewer/package-lock.json viewer/build.mjs
	cd viewer && npm ci --no-audit --no-fund && npm run build
install demo test: $(VIEWER_BUNDLE)

demo: $(STAMP)
	$(VENV)/bin/romanflow demo --output-dir demo_output

test: $(STAMP)
	$(PY) -m pytest -q -n 2 tests

bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) demo_output bench_output
