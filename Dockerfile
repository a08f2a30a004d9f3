# The component (and model server) image. `make image` builds it and tags it with the package version,
# which components/images.py reads; the compiled pipeline YAML names that tag. It carries the platform
# and the projects it trains (here ticket_routing). docs/image.md has the details.
#
# One recipe, two ways to fetch the Debian root (make image picks): with docker, the base stage is
# debian:bookworm-slim and apt-get installs hack/image/debian-packages.txt; with no daemon,
# hack/image/base.sh makes a Debian root from the same packages with mmdebstrap and `buildah build
# --build-arg BASE=<it>` finds them installed. Either way the interpreter is Debian bookworm's python3.11.
#
# What the image holds: the pinned runtime dependencies (no dev tools, no mypy: see
# hack/image/runtime_requirements.py) and the shipyard wheel in the venv /opt/venv (site-packages is
# the only place the code is imported from; /opt/shipyard has no Python packages), plus the feature
# repo's definitions, the environments' settings and the compiled training pipeline under /opt/shipyard. It runs as uid 10001.
ARG BASE=docker.io/library/debian:bookworm-slim
# Build tools, and setuptools at run time too (grpcio-tools requires it; `pip freeze`, hence the lock,
# never lists it): one pin for both.
ARG PIP_VERSION=26.3
ARG SETUPTOOLS_VERSION=84.2.1
ARG PACKAGING_VERSION=26.3

# -- base: Debian + python3.11, the user -------------------------------------------------------------
FROM ${BASE} AS base
COPY hack/image/debian-packages.txt /usr/local/share/shipyard/debian-packages.txt
RUN set -eu; \
    missing=""; \
    for p in $(grep -vE '^[[:space:]]*(#|$)' /usr/local/share/shipyard/debian-packages.txt); do \
      dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing="$missing $p"; \
    done; \
    if [ -n "$missing" ]; then \
      apt-get update; \
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing; \
      rm -rf /var/lib/apt/lists/*; \
    fi; \
    useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin shipyard

# -- tools: pip, setuptools, packaging; used by the stages below, never part of the image -------------
FROM base AS tools
ARG PIP_VERSION
ARG SETUPTOOLS_VERSION
ARG PACKAGING_VERSION
# A CA bundle for pip, mounted at build time only (`make image` mounts the machine's; empty: pip's own).
ARG PIP_CERT=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3.11 -m venv /opt/pip \
 && /opt/pip/bin/pip install --quiet --no-cache-dir \
      "pip==${PIP_VERSION}" "setuptools==${SETUPTOOLS_VERSION}" "packaging==${PACKAGING_VERSION}"

# -- requirements: the exact runtime closure, pinned (feast's SQLAlchemy[mypy] extra left out) --------
FROM tools AS requirements
ARG PIP_CERT=""
ARG SETUPTOOLS_VERSION
COPY pyproject.toml requirements.lock hack/image/runtime_requirements.py /tmp/req/
RUN cd /tmp/req \
 && /opt/pip/bin/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > direct.txt \
 && echo "setuptools==${SETUPTOOLS_VERSION}" > build-pins.txt \
 && /opt/pip/bin/pip install --quiet --no-cache-dir --dry-run --ignore-installed --report report.json \
      -c requirements.lock -c build-pins.txt -r direct.txt \
 && /opt/pip/bin/python runtime_requirements.py report.json --drop-extra sqlalchemy:mypy \
      --lock requirements.lock --lock build-pins.txt > /tmp/runtime-requirements.txt

# -- venv: the runtime dependencies, installed by the tools' pip into a venv that has no pip; the
# packages' own test suites (~110 MB: pandas, scipy, numpy, pyarrow...) are removed ------------------
FROM tools AS venv
ARG PIP_CERT=""
COPY --from=requirements /tmp/runtime-requirements.txt /tmp/runtime-requirements.txt
RUN python3.11 -m venv --without-pip /opt/venv \
 && /opt/pip/bin/pip --python /opt/venv/bin/python install --quiet --no-cache-dir --no-deps \
      -r /tmp/runtime-requirements.txt \
 && find /opt/venv/lib/python3.11/site-packages -mindepth 2 -type d -name tests -prune -exec rm -rf {} + \
 && cp /tmp/runtime-requirements.txt /opt/venv/runtime-requirements.txt

# -- app: the shipyard wheel (platform, components, pipelines, serving, projects), installed for /opt/venv
# under /app-root, so the image gets it as one small layer of its own ---------------------------------
FROM tools AS app
COPY pyproject.toml README.md /src/
COPY shipyard /src/shipyard
COPY components /src/components
COPY pipelines /src/pipelines
COPY serving /src/serving
COPY ticket_routing /src/ticket_routing
RUN /opt/pip/bin/pip wheel --quiet --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels /src \
 && python3.11 -m venv --without-pip /opt/venv \
 && /opt/pip/bin/pip --python /opt/venv/bin/python install --quiet --no-cache-dir --no-deps \
      --root /app-root /wheels/*.whl

# -- the image -----------------------------------------------------------------------------------------
FROM base
ARG BASE
ARG BASE_DIGEST=""
ARG VERSION=""
COPY --from=venv /opt/venv /opt/venv
COPY --from=app /app-root/ /
WORKDIR /opt/shipyard
COPY feature_repo ./feature_repo
COPY environments ./environments
# The compiled training pipeline, which continuous training submits to Kubeflow Pipelines
# (settings kfp.training_package, relative to SHIPYARD_HOME).
COPY pipelines/training.yaml ./pipelines/training.yaml
# Settings come from environments/<env>.yaml here, or from a mounted file named by SHIPYARD_SETTINGS.
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    SHIPYARD_HOME=/opt/shipyard \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8
LABEL org.opencontainers.image.title="shipyard" \
      org.opencontainers.image.description="Shipyard KFP components and KServe model server" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.base.name="${BASE}" \
      org.opencontainers.image.base.digest="${BASE_DIGEST}"
USER 10001
CMD ["shipyard", "--help"]
