# syntax=docker/dockerfile:1
# The guardtrain GPU image: TensorFlow with CUDA (pip's NVIDIA wheels; the host needs only
# the driver and the NVIDIA container toolkit), Ray and guardtrain, installed the way the
# README installs them: scripts/setup-env.sh creates .venv and pip-installs this checkout,
# here with the "gpu" extra, every version the base install uses pinned by
# constraints.txt. The entrypoint is `guardtrain`, run by the unprivileged user
# `guardtrain` (uid 1000): a JOB file runs the code it names, and Ray runs whatever its
# drivers send, so nothing in the container runs as root.
#
#   docker build -t REGISTRY/guardtrain:0.1.0-gpu .
#   docker run --rm --gpus all REGISTRY/guardtrain:0.1.0-gpu demo
#   docker run --rm --gpus all -v "$PWD/runs:/work/guardtrain_runs" \
#       REGISTRY/guardtrain:0.1.0-gpu fit /opt/guardtrain/examples/tiny-job.yaml
#
# The same image runs every node of cluster/ray-cluster.yaml and cluster/k8s/rayjob.yaml.
FROM python:3.11-slim-bookworm

# The Ray and TensorFlow that constraints.txt pins (the build checks they agree), so every
# node (and the machine that drives `ray up` or submits jobs) runs the same versions; Ray
# refuses to mix versions in one cluster.
ARG RAY_VERSION=2.60.0
ARG TENSORFLOW_VERSION=2.21.0

# rsync and ssh: Ray's cluster launcher syncs files into the container; procps: `ray stop`;
# wget: KubeRay's health probes.
RUN apt-get update \
 && apt-get install -y --no-install-recommends rsync openssh-client procps wget \
 && rm -rf /var/lib/apt/lists/*

# uid 1000 is the default user of the cloud images the cluster launcher uses, so the files
# it mounts into the container (the auth token among them) are readable here.
RUN groupadd --gid 1000 guardtrain \
 && useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash guardtrain \
 && mkdir -p /opt/guardtrain /work \
 && chown guardtrain:guardtrain /opt/guardtrain /work

WORKDIR /opt/guardtrain
COPY --chown=guardtrain:guardtrain pyproject.toml README.md constraints.txt ./
COPY --chown=guardtrain:guardtrain scripts/ scripts/
COPY --chown=guardtrain:guardtrain guardtrain/ guardtrain/
COPY --chown=guardtrain:guardtrain examples/ examples/
COPY --chown=guardtrain:guardtrain cluster/ cluster/

# Installed as that user, so the cluster launcher can `pip install -e` the synced
# checkout into this .venv without root.
USER guardtrain

# The README's install: scripts/setup-env.sh (a .venv, then pip install -e ".[gpu]" with
# constraints.txt).
RUN grep -qx "ray==$RAY_VERSION" constraints.txt \
 && grep -qx "tensorflow==$TENSORFLOW_VERSION" constraints.txt \
 && PIP_NO_CACHE_DIR=1 bash scripts/setup-env.sh gpu \
 && .venv/bin/guardtrain --version

ENV PATH="/opt/guardtrain/.venv/bin:${PATH}" \
    TF_CPP_MIN_LOG_LEVEL=2 \
    PYTHONUNBUFFERED=1
WORKDIR /work
ENTRYPOINT ["guardtrain"]
CMD ["--help"]
