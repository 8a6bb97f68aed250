# The two commands a newcomer needs: `make demo` (main job) and `make test` (everything CI runs).
PY := .venv/bin/python

.PHONY: setup demo serve test unit integration deploy proto unasync openapi bench images

setup:
	@scripts/bootstrap.sh

demo: setup
	$(PY) -m rescore_sidecar.tools demo $(ARGS)

serve: setup
	$(PY) -m rescore_sidecar.tools serve $(ARGS)

test: setup
	$(PY) -m pytest tests

unit: setup
	$(PY) -m pytest tests/unit

deploy: setup
	$(PY) -m pytest tests/deploy

integration: setup
	$(PY) -m pytest tests/integration

proto: setup
	$(PY) scripts/gen_proto.py

# The sync connectors modules from their connectors/_async/ sources (a unit test fails when stale).
unasync: setup
	$(PY) scripts/unasync.py

# docs/openapi/*.json from the code that serves them (a unit test fails when stale).
openapi: setup
	$(PY) scripts/gen_openapi.py

bench: setup
	$(PY) bench/sidecar_throughput.py $(ARGS)

# Both images (CPU, GPU) built here without a registry: starts Docker, makes the Debian base once.
images:
	scripts/build_images.sh $(ARGS)
