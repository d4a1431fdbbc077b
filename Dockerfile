# syntax=docker/dockerfile:1
# One image for the four services; each Kubernetes Deployment picks its console script
# (bytespike-edge, bytespike-auth, bytespike-router, bytespike-metering) with `command`.
#
#   docker build -t registry.example.com/bytespike/gateway:0.1.0 .
#   docker run --rm -p 8080:8080 -e BYTESPIKE_EDGE_HOST=0.0.0.0 \
#     registry.example.com/bytespike/gateway:0.1.0 bytespike-edge
ARG PYTHON_IMAGE=python:3.11-slim

# ---- builder: generate the gRPC contracts, install the locked runtime tree into a venv ----
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src

# Code generators, at the versions requirements.lock pins (what `make proto` uses).
COPY requirements.lock ./
RUN python -m venv /opt/tools \
 && /opt/tools/bin/pip install --constraint requirements.lock grpcio-tools mypy-protobuf

# Runtime dependencies only: the project's direct dependencies from pyproject.toml, every
# transitive one held to requirements.lock. The dev tools the lock also pins stay out.
COPY pyproject.toml ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > runtime.txt \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --constraint requirements.lock --requirement runtime.txt

# `make proto`, then the project itself.
COPY proto ./proto
RUN mkdir gen \
 && /opt/tools/bin/python -m grpc_tools.protoc -Iproto \
      --plugin=protoc-gen-mypy=/opt/tools/bin/protoc-gen-mypy \
      --plugin=protoc-gen-mypy_grpc=/opt/tools/bin/protoc-gen-mypy_grpc \
      --python_out=gen --grpc_python_out=gen --mypy_out=gen --mypy_grpc_out=gen \
      $(find proto -name '*.proto') \
 && find gen -type d -exec touch {}/__init__.py \; \
 && rm -f gen/__init__.py
COPY libs ./libs
COPY services ./services
RUN /opt/venv/bin/pip install --no-deps . \
 && /opt/venv/bin/pip uninstall --yes pip setuptools

# ---- runtime: the venv and an unprivileged user, nothing else ----
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="ByteSpike Gateway" \
      org.opencontainers.image.description="Self-hostable LLM API gateway: edge, auth, router, metering"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# uid/gid 10001 match the chart's podSecurityContext; /var/lib/bytespike is the data dir
# (SQLite when no PostgreSQL DSN is given), an emptyDir in Kubernetes.
RUN groupadd --system --gid 10001 bytespike \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /var/lib/bytespike --shell /usr/sbin/nologin bytespike \
 && install -d -o 10001 -g 10001 /var/lib/bytespike
COPY --from=builder /opt/venv /opt/venv
WORKDIR /var/lib/bytespike
USER 10001:10001
# edge: 8080 public, 8081 admin, 9090 metrics; gRPC: auth 50051, router 50052, metering 50053
EXPOSE 8080 8081 9090 50051 50052 50053
CMD ["bytespike-edge"]
