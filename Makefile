# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test clean

$(BIN)/dvp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $@

demo: $(BIN)/dvp
	$(BIN)/dvp sample sample.mp4
	$(BIN)/dvp run sample.mp4 -o sample-blurred.mp4

test: $(BIN)/dvp
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) sample.mp4 sample-blurred.mp4
