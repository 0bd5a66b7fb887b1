# Aura: `make run` starts the service, `make test` runs the whole suite.
# Both set up .venv themselves; a fresh Debian machine needs only Python 3.11.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The contract's dev secret (CONTRACT §2.1); `make run` says when it uses it.
DEV_JWT_SECRET := your_shared_secret_key_must_be_at_least_256_bits_long_for_HS256

.PHONY: run test typecheck pytest unit token diagrams bench mutate system-deps clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	@if [ -z "$$JWT_SECRET" ]; then echo "make run: JWT_SECRET is not set; using the DWP dev secret (never in production)"; fi
	JWT_SECRET="$${JWT_SECRET:-$(DEV_JWT_SECRET)}" AURA_ALLOW_DEV_SECRET="$${AURA_ALLOW_DEV_SECRET:-true}" $(PY) -m aura serve

# redis-server, nginx, Graphviz's dot (docs/statemachine.svg, in DejaVu Sans so the layout is the same on
# every machine) and headless Chromium (the console's page tests, with a Korean font for its screenshots)
# are real parts of the suite; install them when missing and we are root.
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	command -v dot >/dev/null 2>&1 || missing="$$missing graphviz"; \
	[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing="$$missing fonts-dejavu-core"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	fc-list :lang=ko family 2>/dev/null | grep -q . || missing="$$missing fonts-noto-cjk"; \
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

# The fast unit tests only: no redis-server, no uvicorn, no nginx; a few seconds.
unit: $(STAMP)
	$(PY) -m pytest -m "not e2e" -q

token: $(STAMP)
	@JWT_SECRET="$${JWT_SECRET:-$(DEV_JWT_SECRET)}" AURA_ALLOW_DEV_SECRET="$${AURA_ALLOW_DEV_SECRET:-true}" $(PY) -m aura token

diagrams: $(STAMP)
	$(PY) -m aura diagrams

bench: $(STAMP) system-deps
	$(PY) -m bench

# Mutation testing of the core modules with mutmut ([mutmut] in setup.cfg; docs/TESTING.md).
# Not part of `make test`. Runs only the fast unit tests (-m "not e2e": no redis-server, no uvicorn).
# A plain `make mutate` starts afresh (mutants/ is rebuilt); `make mutate MUTANTS='aura.auth.*'`
# re-tests only the named mutants (globs allowed) and keeps the other results.
MUTMUT := $(VENV)/bin/mutmut
MUTANTS ?=
MUTATE_CHILDREN ?= 2

mutate: $(STAMP)
	@grep -Eq '^[[:space:]]+e2e:' setup.cfg || { echo "make mutate: the e2e marker is not registered in setup.cfg, so -m 'not e2e' would run the whole suite" >&2; exit 1; }
	@[ -x $(MUTMUT) ] || $(PY) -m pip install --quiet -e '.[test,mutate]'
	$(if $(MUTANTS),,rm -rf mutants)
	$(MUTMUT) run --max-children $(MUTATE_CHILDREN) $(foreach m,$(MUTANTS),'$(m)')
	@echo; echo "Not killed (mutmut show NAME for the diff):"
	@$(MUTMUT) results
	@echo; echo "Score per module (killed = killed or timed out):"
	@$(MUTMUT) results --all true | sed -E 's/^ +//; s/\.x(_|ǁ).*: /\t/' | awk -F'\t' \
	  '{ n[$$1]++; N++; if ($$2 == "killed" || $$2 == "timeout") { k[$$1]++; K++ } } \
	   END { for (m in n) printf "  %-28s %4d / %4d  %5.1f %%\n", m, k[m], n[m], 100 * k[m] / n[m] | "sort"; close("sort"); \
	         if (N) printf "  %-28s %4d / %4d  %5.1f %%\n", "total", K, N, 100 * K / N }'

clean:
	rm -rf $(VENV) build *.egg-info
