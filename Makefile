# The project's front door: `make run` starts everything, `make test` proves it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install run test test-unit soak lint bench migrate asyncapi clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --editable .  # the fulfil command
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)  ## create .venv, install the pinned dependencies and the project (the fulfil command)

run: install  ## start PostgreSQL + broker (embedded unless DATABASE_URL/KAFKA_BOOTSTRAP_SERVERS are set) and the four services
	$(BIN)/python -m shared.devstack run

migrate: install  ## create databases and topics and run the migrations, then exit
	$(BIN)/python -m shared.devstack migrate

test: install  ## the whole suite against real servers (started once per session)
	$(BIN)/python -m pytest

test-unit: install  ## pure domain tests only (no servers)
	$(BIN)/python -m pytest tests/unit

soak: install  ## kill -9 of a random service at a random moment, SOAK_ROUNDS (10) times with a new seed each
	for seed in $$(seq 1 $${SOAK_ROUNDS:-10}); do \
		FAULT_SEED=$$seed $(BIN)/python -m pytest -q tests/faults/test_crash_points.py -k random_service || exit 1; \
	done

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy shared services bench

bench: install  ## benchmarks with same-run anchors (see bench/README.md): drain, notify, then flash
	$(BIN)/python -m bench.drain
	$(BIN)/python -m bench.notify
	$(BIN)/python -m bench.flash

asyncapi: install  ## write docs/asyncapi.yaml (the event contract) from the event models; a unit test fails when it is stale
	$(BIN)/python -m shared.asyncapi

clean:
	rm -rf $(VENV) .devstack .pytest_cache .mypy_cache .ruff_cache .hypothesis
