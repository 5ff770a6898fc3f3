# stable-verl: the two commands a user needs are `make demo` and `make test`; both set up .venv first.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.stable-verl-stack

# Prefect runs in ephemeral mode unless PREFECT_API_URL points at a server; keep its state in the repo.
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120

.PHONY: setup browser demo test test-extended test-all test-fast docs bench soak slow lint lock clean

setup: $(STAMP)

# Re-run the (idempotent) install only when what it installs changed.
$(STAMP): infra/install_cpu.sh infra/requirements-cpu.lock infra/vllm-dist-alias/pyproject.toml pyproject.toml
	bash infra/install_cpu.sh $(VENV)

demo: setup            ## the main job: cold-start comparison (3 teacher-style inits -> MiniRL -> avg@k -> report)
	$(PY) -m flows.coldstart --config configs/coldstart.yaml

# The page-render test (tests/integration/test_site_render.py) needs a headless browser: Debian's chromium.
browser:               ## install chromium if missing (needs root; without it that one test is skipped, saying why)
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; } || \
	  echo "chromium could not be installed: tests/integration/test_site_render.py will be skipped"

# make test is CI's suite, kept to about 20 minutes on the README's machine by sharing real verl runs between tests;
# the real-stack tests that do not fit are marked `extended` (pyproject.toml) and run by make test-extended, which
# CI runs after make test when its machine is fast enough (.ci/run).
test: setup browser docs  ## the unit tests, the real verl + vLLM + Ray integration tests not marked extended, the docs
	$(PY) -m pytest -v -rs --durations=60 -m "not extended" tests/unit tests/integration

test-extended: setup browser  ## the real-stack integration tests marked extended (kept out of make test's 20 min)
	$(PY) -m pytest -v -rs --durations=40 -m extended tests/integration

test-all: test test-extended  ## every test: run it before resolving an issue that touches an extended test

test-fast: setup       ## unit tests only (about 5 min on 2 cores)
	$(PY) -m pytest -q tests/unit

# The reference pages are generated from the code first; -W: a warning (a broken link, file or anchor, a page in
# no toctree) fails the build. linkcheck checks local links only: CI reaches no web server (docs/conf.py).
docs: setup            ## the docs site (docs/_build/html/index.html), warnings as errors, links checked
	$(PY) docs/gen_reference.py
	$(VENV)/bin/sphinx-build -E -W --keep-going -q -b html docs docs/_build/html
	$(VENV)/bin/sphinx-build -E -W --keep-going -q -b linkcheck docs docs/_build/linkcheck

bench: setup           ## benchmarks; one `BENCH <name> <value> <op> <target>` line per figure
	$(PY) tests/benchmarks/run.py $(BENCHES)

soak: setup            ## fault campaigns kept out of CI (kill -9 points, S3 fault rates); one `SOAK` line per count
	$(PY) tests/soak/run.py $(CAMPAIGNS)

slow:                  ## run CMD on an emulated slower machine: SLOW_CPUS cores in all (default 0.4, ~5x slower here)
	bash infra/slow_machine.sh $(CMD)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

lock:                  ## re-resolve infra/requirements-cpu.in into the lock
	bash infra/install_cpu.sh --resolve $(VENV)

clean:
	rm -rf artifacts .prefect .pytest_cache docs/_build docs/reference/generated
