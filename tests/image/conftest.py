"""Fixtures for the image tier: the image built by `make image`, the engine that holds it, and (for
kfp.local.DockerRunner) a Docker-API socket: docker's own, or `podman system service` on a socket of
this session's."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.image.engine import Engine, find_engine
from tests.support import require


@pytest.fixture(scope="session")
def engine() -> Engine:
    found, reason = find_engine()
    require(found is not None, reason)
    assert found is not None
    return found


@pytest.fixture(scope="session")
def docker_host(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A DOCKER_HOST for the `docker` SDK that kfp.local.DockerRunner uses."""
    import docker  # type: ignore[import-untyped]

    if not engine.is_podman:
        yield os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        return
    # A socket path must stay under ~100 bytes: pytest's temp dirs can be longer.
    sock_dir = Path(tmp_path_factory.mktemp("podman-api"))
    sock = sock_dir / "podman.sock"
    if len(str(sock)) > 100:
        sock = Path("/tmp") / f"shipyard-podman-{os.getpid()}.sock"
    url = f"unix://{sock}"
    log = (sock_dir / "service.log").open("wb")
    proc = subprocess.Popen(
        [engine.cli, "system", "service", "--time=0", url],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(engine.env),
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"podman system service exited with {proc.returncode}: see {log.name}")
            if sock.exists():
                try:
                    client = docker.DockerClient(base_url=url, timeout=30)
                    client.ping()
                    client.close()
                    break
                except docker.errors.DockerException:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"podman system service did not answer on {url}: see {log.name}")
            time.sleep(0.2)
        with _podman_not_found_is_404():
            yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        sock.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def skopeo() -> str:
    path = shutil.which("skopeo")
    require(path is not None, "skopeo is not installed (make image-tools)")
    assert path is not None
    return path


@contextlib.contextmanager
def _podman_not_found_is_404() -> Iterator[None]:
    """Podman's Docker-compatible API answers 500 "no such container" where Docker answers 404.

    kfp.local's DockerRunner starts each task with auto_remove=True and catches the docker SDK's
    NotFound for the race where a container exits and is removed before its logs are read; with
    podman that race surfaced as a plain APIError and failed the run (seen on clean-clone CI runs).
    This maps exactly that status and message back to NotFound; podman and kfp still do the work.
    """
    import docker
    import docker.api.client  # type: ignore[import-untyped]

    original = docker.api.client.create_api_error_from_http_exception

    def translate(error: Any) -> None:
        try:
            original(error)
        except docker.errors.APIError as err:
            if err.status_code == 500 and "no such container" in str(err.explanation or ""):
                raise docker.errors.NotFound(
                    error, response=err.response, explanation=err.explanation
                ) from error
            raise

    docker.api.client.create_api_error_from_http_exception = translate
    try:
        yield
    finally:
        docker.api.client.create_api_error_from_http_exception = original
