# sipguard: two commands set everything up on a fresh Debian/Ubuntu machine.
#   make demo   venv + sipguard + sipp, then a few real calls through sipguard (memory store)
#   make test   everything the tests need (redis-server, sipp, kamailio, secsipidx, postgresql, chromium), then the suite
#   make native the hot path compiled with mypyc (both of the above run it; rebuilds what changed)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

DEMO_PKGS := sip-tester libjemalloc2
TEST_PKGS := redis-server sip-tester libjemalloc2 kamailio kamailio-secsipid-modules secsipidx iproute2 postgresql chromium

.PHONY: demo test venv native os-demo os-test lint typecheck unit bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	SIPGUARD_COMPILE=0 $(PY) -m pip install -q -e '.[test,bench]'   # compiled in place by `make native`
	touch $@

venv: $(VENV)/.installed

# The hot path compiled with mypyc beside its source (sipguard/native.py); rebuilt when a
# source changed. Without a C compiler sipguard runs as Python: same behaviour, more CPU.
native: venv
	@$(PY) sipguard/native.py ensure

# Install Debian packages only when one is missing (apt-get update first on a fresh box).
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing OS packages:$$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	fi
endef

os-demo:
	$(call apt_install,$(DEMO_PKGS))

# The PostgreSQL tests use the server on 127.0.0.1:5432 (user postgres, trust) when it answers
# and skip saying why when not; a Debian cluster on that port that is installed but stopped is started.
os-test:
	$(call apt_install,$(TEST_PKGS))
	@pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || for c in $$(pg_lsclusters -h 2>/dev/null | \
	  awk '$$3 == 5432 && $$4 != "online" {print $$1 "/" $$2}'); do \
	  $(SUDO) pg_ctlcluster $${c%/*} $${c#*/} start || true; done

demo: os-demo venv native
	$(PY) -m sipguard.demo --config config/sipguard.demo.yaml

lint: venv
	$(VENV)/bin/ruff check sipguard tests bench

typecheck: venv
	$(VENV)/bin/mypy sipguard

test: os-test venv native lint typecheck
	$(PY) -m pytest -q

unit: venv native
	$(PY) -m pytest -q tests/unit tests/property

bench: os-test venv native
	@echo "see bench/RESULTS.md for the commands of each benchmark"

clean:
	[ ! -x $(PY) ] || $(PY) sipguard/native.py clean
	rm -rf $(VENV) var build *.egg-info .mypy_cache .ruff_cache .hypothesis
