# syntax=docker/dockerfile:1.7
# CPU image of the rescore sidecar (also the natural image for the HTTP proxy).
#   docker build -f docker/cpu.Dockerfile -t rescore-sidecar:cpu .
# By default torch comes from PyPI, whose Linux wheel is the CUDA build: it runs on CPU but pulls
# the NVIDIA libraries (several GB). Where the PyTorch CPU index is reachable, a ~10x smaller image:
#   docker build -f docker/cpu.Dockerfile --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv \
    && groupadd --system --gid 10001 rescore \
    && useradd --system --uid 10001 --gid rescore --home-dir /home/rescore --create-home rescore

# Dependencies first (the big layer), pinned by constraints.txt; code changes do not rebuild it.
WORKDIR /opt/rescore/src
COPY pyproject.toml constraints.txt docker/pyproject_deps.py ./
ARG EXTRAS=server,proxy,opensearch,elasticsearch
ARG TORCH_INDEX_URL=""
# torch from the CPU index first (when given); "torch==X" accepts the local "X+cpu" build, so the
# second install keeps it and fetches only the rest.
RUN python pyproject_deps.py pyproject.toml "$EXTRAS" > requirements.txt \
    && if [ -n "$TORCH_INDEX_URL" ]; then \
         pip install --no-cache-dir --index-url "$TORCH_INDEX_URL" "$(grep -i '^torch==' constraints.txt)"; \
       fi \
    && pip install --no-cache-dir -c constraints.txt -r requirements.txt

# Optional models baked in for offline clusters: comma-separated [NAME=]HUB_ID[@REVISION].
# A gated model's token is passed as a build secret: --secret id=hf_token,env=HF_TOKEN
ARG BAKE_MODELS=""
COPY docker/bake_models.py /opt/rescore/bin/
RUN --mount=type=secret,id=hf_token,required=false \
    mkdir -p /opt/rescore/models \
    && if [ -n "$BAKE_MODELS" ]; then python /opt/rescore/bin/bake_models.py "$BAKE_MODELS" /opt/rescore/models; fi

COPY README.md ./
COPY sidecar ./sidecar
COPY connectors ./connectors
COPY tools ./tools
COPY proto ./proto
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf /opt/rescore/src/build
COPY docker/healthcheck.py docker/entrypoint.sh /opt/rescore/bin/

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
