# The component (and model server) image. CI builds it and tags it with the package version, which
# components/images.py reads; the compiled pipeline YAML names that tag. It carries the platform and
# the projects it trains (here ticket_routing).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /opt/shipyard
COPY pyproject.toml requirements.lock README.md ./
COPY shipyard ./shipyard
COPY components ./components
COPY pipelines ./pipelines
COPY serving ./serving
COPY ticket_routing ./ticket_routing
RUN pip install --no-cache-dir -c requirements.lock . && useradd --uid 10001 --create-home shipyard
COPY feature_repo ./feature_repo
COPY environments ./environments
# Settings come from environments/<env>.yaml here, or from a mounted file named by SHIPYARD_SETTINGS.
ENV SHIPYARD_HOME=/opt/shipyard
USER 10001
