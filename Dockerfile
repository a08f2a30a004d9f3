# The component (and model server) image. CI builds it and tags it with the version pinned in
# components/images.py; the compiled pipeline YAML names that tag.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /opt/shipyard
COPY pyproject.toml requirements.lock README.md ./
COPY shipyard ./shipyard
COPY components ./components
COPY pipelines ./pipelines
COPY serving ./serving
RUN pip install --no-cache-dir -c requirements.lock . && useradd --uid 10001 --create-home shipyard
COPY feature_repo ./feature_repo
USER 10001
