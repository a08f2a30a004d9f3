"""Push the image to a registry and pull it back into an empty store: `crane registry serve` on
loopback (crane from `make image-tools`), pushed with skopeo (podman's store) or docker, pulled back
with podman into a fresh storage root (or with crane into an empty OCI layout), and run from there."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.image.engine import CRANE, Engine, crane_registry


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """A registry on 127.0.0.1 storing blobs on disk; its host:port."""
    with crane_registry(tmp_path) as address:
        yield address


def crane(*args: str) -> str:
    proc = subprocess.run([str(CRANE), *args, "--insecure"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_push_to_and_pull_from_a_loopback_registry(
    engine: Engine, skopeo: str, registry: str, tmp_path: Path
) -> None:
    name = engine.image.split("/", 1)[1]  # shipyard-mlops/shipyard:<version>
    remote = f"{registry}/{name}"
    if engine.is_podman:
        engine_env = dict(engine.env)
        push = subprocess.run(
            [skopeo, "copy", "--quiet", "--dest-tls-verify=false", f"containers-storage:{engine.image}", f"docker://{remote}"],
            capture_output=True, text=True, timeout=900, env=engine_env,
        )  # fmt: skip
        assert push.returncode == 0, push.stderr
    else:
        engine.call("tag", engine.image, remote)
        engine.call("push", remote, timeout=900)

    digest = crane("digest", remote).strip()
    assert digest.startswith("sha256:")
    manifest = json.loads(crane("manifest", remote))
    config = json.loads(crane("config", remote))
    local_labels = (engine.inspect().get("Config") or {}).get("Labels") or {}
    assert config["config"]["Labels"] == local_labels
    assert str(config["config"]["User"]) == "10001"
    compressed = sum(layer["size"] for layer in manifest["layers"])
    print(
        f"pushed {remote}: {digest}, {len(manifest['layers'])} layers, {compressed / 1e6:.0f} MB compressed"
    )

    # Pull back into an empty OCI layout: the same manifest digest.
    layout = tmp_path / "pulled-oci"
    crane("pull", "--format", "oci", remote, str(layout))
    index = json.loads((layout / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [digest]

    if engine.is_podman:
        # ...and into a fresh, empty podman store, then run from there with no network.
        # podman refuses a run root longer than 50 characters: pytest's temp paths are longer.
        runroot = Path(tempfile.mkdtemp(prefix="shipyard-run-", dir="/tmp"))
        store = ["--root", str(tmp_path / "store"), "--runroot", str(runroot), "--storage-driver", "overlay"]
        fresh = Engine(cli=engine.cli, image=remote, env=engine.env)
        try:
            assert fresh.call(*store, "images", "--quiet").stdout.strip() == ""
            fresh.call(*store, "pull", "--quiet", "--tls-verify=false", remote, timeout=900)
            inspected = json.loads(fresh.call(*store, "image", "inspect", remote).stdout)[0]
            assert digest in inspected["Digest"] or digest in str(inspected.get("RepoDigests"))
            ran = fresh.call(
                *store,
                *fresh.run_args(["python", "-c", "import shipyard, feast, kserve; print('ok')"]),
                timeout=300,
            )
            assert ran.stdout.strip().endswith("ok")
        finally:
            fresh.call(*store, "rmi", "--all", "--force", check=False, timeout=300)
            shutil.rmtree(runroot, ignore_errors=True)
