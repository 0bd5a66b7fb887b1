# Aura: `make run` starts the service, `make test` runs the whole suite.
# Both set up .venv themselves; a fresh Debian machine needs only Python 3.11.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The contract's dev secret (CONTRACT §2.1); `make run` says when it uses it.
DEV_JWT_SECRET := your_shared_secret_key_must_be_at_least_256_bits_long_for_HS256

.PHONY: run test typecheck pytest token diagrams bench system-deps clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	@if [ -z "$$JWT_SECRET" ]; then echo "make run: JWT_SECRET is not set; using the DWP dev secret (never in production)"; fi
	JWT_SECRET="$${JWT_SECRET:-$(DEV_JWT_SECRET)}" $(PY) -m aura serve

# redis-server and nginx are real parts of the suite; install them when missing and we are root.
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "make test needs$$missing: install it (e.g. sudo apt-get install$$missing) and run make test again" >&2; \
	    exit 1; \
	  fi; \
	fi

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP) system-deps
	$(PY) -m pytest

test: typecheck pytest

token: $(STAMP)
	@JWT_SECRET="$${JWT_SECRET:-$(DEV_JWT_SECRET)}" $(PY) -m aura token

diagrams: $(STAMP)
	$(PY) -m aura diagrams

bench: $(STAMP) system-deps
	$(PY) -m bench

clean:
	rm -rf $(VENV) build *.egg-info
