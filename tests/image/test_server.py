"""The model server from the image: `python -m serving` for one registered version directory mounted
into the container (read-only, where KServe's storage initializer leaves it), answering KServe V1
predict exactly as the same server does on the host."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import httpx

from serving.server import server_args
from tests.image.engine import Engine, free_port, open_to_container_user
from tests.integration.serving_stack import (
    LABELS,
    MODEL,
    build_stack,
    known_entities,
    serve_config,
    start_server,
)

TEXTS = (
    "refund for invoice 3",
    "password reset link broken",
    "warehouse stock count is off",
    "payroll question",
)


def wait_ready(engine: Engine, name: str, url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=5) as client:
        while time.monotonic() < deadline:
            try:
                if client.get("/v2/health/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            state = engine.call("inspect", "--format", "{{.State.Running}}", name, check=False).stdout.strip()
            if state == "false":
                logs = engine.call("logs", name, check=False)
                raise AssertionError(
                    f"the server container exited:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}"
                )
            time.sleep(0.5)
    logs = engine.call("logs", name, check=False)
    raise AssertionError(f"not ready within {timeout:.0f}s:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}")


def predict(url: str, instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
    with httpx.Client(base_url=url, timeout=60) as client:
        r = client.post(f"/v1/models/{MODEL}:predict", json={"instances": instances})
    assert r.status_code == 200, r.text
    predictions: list[dict[str, Any]] = r.json()["predictions"]
    return predictions


def test_model_server_from_the_image_answers_v1_predict(engine: Engine, tmp_path: Path) -> None:
    stack = build_stack(tmp_path / "stack")
    open_to_container_user(stack.repo)  # the online store is SQLite: uid 10001 opens it
    instances = [
        {"customer_id": customer, "ticket_text": text}
        for customer, text in zip(known_entities(stack, len(TEXTS)), TEXTS, strict=True)
    ]
    port = free_port()
    # The version directory where KServe mounts it; the feature repo at its own path (Feast's registry
    # records its SQLite tables by absolute path); request logs in the container's /tmp.
    config = dataclasses.replace(
        serve_config(stack, tmp_path),
        model_dir=Path("/mnt/models"),
        port=port,
        request_log_dir=Path("/tmp/request_log"),
    )
    command = ["python", "-m", "serving", *server_args(config)]
    volumes = {stack.model_dir: "/mnt/models:ro", stack.repo: str(stack.repo)}
    with engine.container(command, volumes=volumes, network="host") as name:
        url = f"http://127.0.0.1:{port}"
        wait_ready(engine, name, url)
        in_image = predict(url, instances)
        with httpx.Client(base_url=url, timeout=30) as client:
            meta = client.get(f"/v2/models/{MODEL}").json()
        user = engine.call("exec", name, "id", "-u").stdout.strip()

    assert user == "10001"
    assert [p["department"] for p in in_image] and all(p["department"] in LABELS for p in in_image)
    assert meta["name"] == MODEL

    # The same version served on the host answers the same.
    host = start_server(stack, tmp_path / "host-server")
    try:
        on_host = predict(host.url, instances)
    finally:
        host.stop()
    assert [p["department"] for p in in_image] == [p["department"] for p in on_host]
    assert in_image == on_host
