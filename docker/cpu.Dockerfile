# CPU image of the rescore sidecar (also the natural image for the HTTP proxy).
#   docker build -f docker/cpu.Dockerfile -t rescore-sidecar:cpu .
# scripts/build_images.sh builds both images without any registry (a Debian base made from
# Debian's packages, passed as PYTHON_IMAGE). No `# syntax=` line on purpose: it would make
# BuildKit pull a frontend image; the built-in frontend has RUN --mount (cache, secret).
# By default torch comes from PyPI, whose Linux wheel is the CUDA build: it runs on CPU but pulls
# the NVIDIA libraries (several GB). Where the PyTorch CPU index is reachable, a ~10x smaller image:
#   docker build -f docker/cpu.Dockerfile --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .
# The lines up to the dependency layer are the same in gpu.Dockerfile, so building both images
# installs torch once (shared layers).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

# python3: the official python image and Debian's python3 both have it (Debian has no `python`).
RUN python3 -m venv /opt/venv \
    && groupadd --system --gid 10001 rescore \
    && useradd --system --uid 10001 --gid rescore --home-dir /home/rescore --create-home rescore

# Dependencies first (the big layer), keyed on pyproject.toml and constraints.txt only: code
# changes do not rebuild it. pip's cache lives in a BuildKit cache mount (not in the image), so
# even a changed pin re-uses the downloaded wheels. An intercepting proxy's or private index's CA
# bundle can be given as the build secret pip_ca (--secret id=pip_ca,src=/path/ca.pem).
WORKDIR /opt/rescore/src
COPY pyproject.toml constraints.txt docker/pyproject_deps.py ./
# openvino: on CPU the sidecar's backend `auto` is OpenVINO when installed (1.2-2.4x torch fp32 in
# bench/sidecar_throughput.py); in both images so the layer stays shared.
ARG EXTRAS=server,openvino,proxy,opensearch,elasticsearch
ARG TORCH_INDEX_URL=""
# torch from the CPU index first (when given); "torch==X" accepts the local "X+cpu" build, so the
# second install keeps it and fetches only the rest.
RUN --mount=type=cache,target=/root/.cache/pip,id=rescore-sidecar-pip,sharing=locked \
    --mount=type=secret,id=pip_ca,required=false \
    if [ -f /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
    && python pyproject_deps.py pyproject.toml "$EXTRAS" > requirements.txt \
    && if [ -n "$TORCH_INDEX_URL" ]; then \
         pip install --index-url "$TORCH_INDEX_URL" "$(grep -i '^torch==' constraints.txt)"; \
       fi \
    && pip install -c constraints.txt -r requirements.txt "setuptools>=77"

# Optional models baked in for offline clusters: comma-separated [NAME=]SOURCE[@REVISION], where
# SOURCE is a hub id or ./DIR, a folder under docker/models/ in the build context (a local or
# fine-tuned checkpoint). A gated model's token is passed as a build secret:
#   --secret id=hf_token,env=HF_TOKEN
ARG BAKE_MODELS=""
COPY docker/bake_models.py /opt/rescore/bin/
# docker/models/ is bind-mounted, not copied: a local model is stored once, in /opt/rescore/models.
RUN --mount=type=bind,source=docker/models,target=/opt/rescore/bake-src \
    --mount=type=secret,id=hf_token,required=false \
    --mount=type=secret,id=pip_ca,required=false \
    if [ -f /run/secrets/pip_ca ]; then export REQUESTS_CA_BUNDLE=/run/secrets/pip_ca; fi \
    && mkdir -p /opt/rescore/models \
    && if [ -n "$BAKE_MODELS" ]; then python /opt/rescore/bin/bake_models.py "$BAKE_MODELS" /opt/rescore/models /opt/rescore/bake-src; fi

COPY README.md ./
COPY sidecar ./sidecar
COPY connectors ./connectors
COPY tools ./tools
COPY proto ./proto
# No build isolation: setuptools is in the dependency layer, so this layer needs no network.
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && rm -rf /opt/rescore/src/build
COPY docker/healthcheck.py docker/entrypoint.sh /opt/rescore/bin/

# Derived artefacts (exported OpenVINO IR, calibrated int8) need the installed code, so they are
# made here, after the code layer: `rescore-sidecar prepare-model $PREPARE_MODELS` (model strings
# as for --model, split on spaces, e.g. "mine=/opt/rescore/models/mine,precision=int8"); empty
# prepares the bundled default model. They are written beside each model and found there at
# start although the folder is read-only to the sidecar's user, so a start exports nothing.
ARG PREPARE_MODELS=""
RUN rescore-sidecar prepare-model $PREPARE_MODELS

# Model downloads land in the cache volume; mount it (or a PVC) so restarts do not re-download.
# No RESCORE_* settings here: environment beats the config file, so image defaults would
# silently override a --config / Helm ConfigMap (the sidecar's own defaults apply instead).
ENV HF_HOME=/var/cache/rescore/huggingface \
    XDG_CACHE_HOME=/var/cache/rescore
RUN mkdir -p /var/cache/rescore && chown rescore:rescore /var/cache/rescore
VOLUME ["/var/cache/rescore"]

USER 10001:10001
WORKDIR /home/rescore
EXPOSE 50051 9400 9201
# start-period covers a first model download; Kubernetes uses its own gRPC probes instead.
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 \
    CMD ["python", "/opt/rescore/bin/healthcheck.py"]
ENTRYPOINT ["/opt/rescore/bin/entrypoint.sh", "rescore-sidecar"]
CMD ["serve"]
