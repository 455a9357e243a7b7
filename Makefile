# kubeling: `make run` starts the cluster, `make test` runs the whole suite.
# Both create or refresh .venv by themselves.
# PY: the interpreter .venv is made from (default: see scripts/bootstrap.sh)
PY ?=
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test lint bench venv clean

$(STAMP): pyproject.toml scripts/bootstrap.sh
	PY="$(PY)" bash scripts/bootstrap.sh
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/kubeling up

test: $(STAMP)
	$(VENV)/bin/ruff check kubeling tests benchmarks
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider tests

lint: $(STAMP)
	$(VENV)/bin/ruff check kubeling tests benchmarks

bench: $(STAMP)
	$(VENV)/bin/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
