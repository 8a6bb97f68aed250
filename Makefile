# The two commands a newcomer needs: `make demo` (main job) and `make test` (everything CI runs).
PY := .venv/bin/python

.PHONY: setup demo serve test unit integration proto bench

setup:
	@scripts/bootstrap.sh

demo: setup
	$(PY) -m sidecar demo $(ARGS)

serve: setup
	$(PY) -m sidecar serve $(ARGS)

test: setup
	$(PY) -m pytest tests

unit: setup
	$(PY) -m pytest tests/unit

integration: setup
	$(PY) -m pytest tests/integration

proto: setup
	$(PY) scripts/gen_proto.py

bench: setup
	$(PY) bench/sidecar_throughput.py $(ARGS)
