# syntax=docker/dockerfile:1.7
# GPU image of the rescore sidecar: CUDA runtime base, the CUDA build of torch from PyPI.
#   docker build -f docker/gpu.Dockerfile -t rescore-sidecar:gpu .
#   docker build -f docker/gpu.Dockerfile --build-arg BAKE_MODELS=BAAI/bge-reranker-base -t rescore-sidecar:gpu-bge .
# Build context is the repository root. The torch wheel bundles its own CUDA 13 libraries; the
# base provides the matching runtime layout and NVIDIA container-toolkit hooks. Host driver >= 580.
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-runtime-ubuntu24.04
FROM ${CUDA_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

# Distribution Python (3.12 on Ubuntu 24.04); the project supports >= 3.10.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv \
    && groupadd --system --gid 10001 rescore \
    && useradd --system --uid 10001 --gid rescore --home-dir /home/rescore --create-home rescore

# Dependencies first (the multi-GB layer), pinned by constraints.txt; code changes do not rebuild it.
WORKDIR /opt/rescore/src
COPY pyproject.toml constraints.txt docker/pyproject_deps.py ./
ARG EXTRAS=server,proxy,opensearch,elasticsearch
RUN python pyproject_deps.py pyproject.toml "$EXTRAS" > requirements.txt \
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
EXPOSE 50051 9400
# start-period covers a first model download; Kubernetes uses its own gRPC probes instead.
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 \
    CMD ["python", "/opt/rescore/bin/healthcheck.py"]
ENTRYPOINT ["/opt/rescore/bin/entrypoint.sh", "rescore-sidecar"]
CMD ["serve"]
