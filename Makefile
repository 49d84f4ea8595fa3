# The two commands of the README: `make demo` and `make test`; `make check` lints and type-checks.
# The newest Python the dependencies publish wheels for (pyproject's requires-python) on the PATH.
PYTHON ?= $(firstword $(foreach v,3.12 3.11,$(shell python$(v) -c '' 2>/dev/null && echo python$(v))) python3.11)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test check clean

# uv installs the same requirements in seconds where pip takes minutes; pip where uv cannot be had.
# Compiled at install, as pip does: with PYTHONDONTWRITEBYTECODE set, each process would compile its imports.
$(BIN)/dvp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q uv && $(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -e ".[test]" \
		|| $(BIN)/pip install -q -e ".[test]"
	touch $@

demo: $(BIN)/dvp
	$(BIN)/dvp sample sample.mp4
	$(BIN)/dvp run sample.mp4 -o sample-blurred.mp4

test: $(BIN)/dvp
	$(BIN)/python -m pytest --durations=40

# mypy reads the installed layout: the stages keep their top-level folders but
# install as dvp.streams, dvp.consumers, ... (pyproject's package-dir), which an
# editable install only resolves at run time.
check: $(BIN)/dvp
	$(BIN)/ruff check .
	rm -rf build/typecheck build/lib  # build/lib: modules moved or gone since the last build
	$(BIN)/pip install -q --no-deps --target build/typecheck .
	cd build/typecheck && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p dvp

clean:
	rm -rf $(VENV) build sample.mp4 sample-blurred.mp4
