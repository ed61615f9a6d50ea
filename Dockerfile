# syntax=docker/dockerfile:1
# The guardtrain GPU image: TensorFlow with CUDA (pip's NVIDIA wheels; the host needs only
# the driver and the NVIDIA container toolkit), Ray and guardtrain, installed the way the
# README installs them: scripts/setup-env.sh creates .venv and pip-installs this checkout,
# here with the "gpu" extra. The entrypoint is `guardtrain`.
#
#   docker build -t REGISTRY/guardtrain:0.1.0-gpu .
#   docker run --rm --gpus all REGISTRY/guardtrain:0.1.0-gpu demo
#   docker run --rm --gpus all -v "$PWD/runs:/work/guardtrain_runs" \
#       REGISTRY/guardtrain:0.1.0-gpu fit /opt/guardtrain/examples/tiny-job.yaml
#
# The same image runs every node of cluster/ray-cluster.yaml and cluster/k8s/rayjob.yaml.
FROM python:3.11-slim-bookworm

# Ray and TensorFlow pinned, so every node (and the machine that drives `ray up` or
# submits jobs) runs the same versions; Ray refuses to mix versions in one cluster.
ARG RAY_VERSION=2.60.0
ARG TENSORFLOW_VERSION=2.21.0

# rsync and ssh: Ray's cluster launcher syncs files into the container; procps: `ray stop`.
RUN apt-get update \
 && apt-get install -y --no-install-recommends rsync openssh-client procps \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/guardtrain
COPY pyproject.toml README.md ./
COPY scripts/ scripts/
COPY guardtrain/ guardtrain/
COPY examples/ examples/
COPY cluster/ cluster/

# The README's install: scripts/setup-env.sh (a .venv, then pip install -e ".[gpu]").
RUN printf 'ray==%s\ntensorflow==%s\n' "$RAY_VERSION" "$TENSORFLOW_VERSION" > /tmp/constraints.txt \
 && PIP_CONSTRAINT=/tmp/constraints.txt PIP_NO_CACHE_DIR=1 bash scripts/setup-env.sh gpu \
 && rm /tmp/constraints.txt \
 && .venv/bin/guardtrain --version

ENV PATH="/opt/guardtrain/.venv/bin:${PATH}" \
    TF_CPP_MIN_LOG_LEVEL=2 \
    PYTHONUNBUFFERED=1
WORKDIR /work
ENTRYPOINT ["guardtrain"]
CMD ["--help"]
