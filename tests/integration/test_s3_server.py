"""The `s3` fixture's MinIO behaves like S3 where the model registry will rely on it, through s3fs.

What a registry on S3 needs: objects round-trip, a key can be created exactly once (conditional
PUT, `If-None-Match: *`) also when writers race, and a listing shows a write or a delete at once.

The failed conditional create is the one to know: on MinIO s3fs raises a plain `OSError` with
`errno.EINVAL` ("At least one of the pre-conditions you specified did not hold"), NOT the
`FileExistsError` it raises on AWS. s3fs turns a `PreconditionFailed` into FileExistsError only when
the error carries `<Condition>If-None-Match</Condition>`, which AWS sends and MinIO does not. The
exception's `__cause__` is the botocore `ClientError` with code `PreconditionFailed` and HTTP 412 on
both, so `is_create_conflict` below is the check that works on either; catching only
FileExistsError would let every conflict on MinIO escape as an error.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.s3server import S3Server, pinned_minio_version

MiB = 2**20


def is_create_conflict(error: BaseException) -> bool:
    """Whether an s3fs error means "a conditional create found the key taken" (HTTP 412)."""
    if isinstance(error, FileExistsError):  # AWS: s3fs sees the If-None-Match condition
        return True
    response = getattr(error.__cause__, "response", None) or {}
    return bool(
        response.get("Error", {}).get("Code") == "PreconditionFailed"
        or response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412
    )


def test_round_trip_write_read_list_delete(s3: S3Server) -> None:
    fs = s3.filesystem()
    bucket = s3.new_bucket()
    files = {
        f"{bucket}/models/churn/v1/model.joblib": b"\x00\x01binary" * 1000,
        f"{bucket}/models/churn/v1/metadata.json": b'{"version": 1}',
        f"{bucket}/models/churn/v2/model.joblib": b"v2",
    }
    for path, data in files.items():
        fs.pipe_file(path, data)

    for path, data in files.items():
        assert fs.cat_file(path) == data
        assert fs.info(path)["size"] == len(data)
    assert fs.cat_file(f"{bucket}/models/churn/v1/model.joblib", start=1, end=7) == b"\x01binar"
    assert sorted(fs.find(bucket)) == sorted(files)
    assert sorted(fs.ls(f"{bucket}/models/churn", detail=False)) == [
        f"{bucket}/models/churn/v1",
        f"{bucket}/models/churn/v2",
    ]

    fs.rm(f"{bucket}/models/churn/v1", recursive=True)
    assert fs.find(bucket) == [f"{bucket}/models/churn/v2/model.joblib"]
    assert not fs.exists(f"{bucket}/models/churn/v1/model.joblib")
    with pytest.raises(FileNotFoundError):
        fs.cat_file(f"{bucket}/models/churn/v1/metadata.json")


def test_conditional_create_refuses_an_existing_key(s3: S3Server) -> None:
    """The second `pipe_file(mode="create")` of a key raises OSError(EINVAL), caused by a 412.

    Exactly this: `type(error) is OSError` with errno EINVAL (s3fs's mapping of PreconditionFailed
    without AWS's Condition element), not FileExistsError; see the module docstring.
    """
    fs = s3.filesystem()
    path = f"{s3.new_bucket()}/models/churn/v1/model.joblib"

    fs.pipe_file(path, b"first", mode="create")
    with pytest.raises(OSError) as raised:
        fs.pipe_file(path, b"second", mode="create")

    error = raised.value
    assert type(error) is OSError
    assert error.errno == errno.EINVAL
    assert "pre-conditions you specified did not hold" in str(error)
    cause: Any = error.__cause__
    assert type(cause).__name__ == "ClientError"
    assert cause.response["Error"]["Code"] == "PreconditionFailed"
    assert cause.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert is_create_conflict(error)
    assert fs.cat_file(path) == b"first"  # the loser changed nothing

    fs.pipe_file(path, b"third")  # a plain PUT still overwrites
    assert fs.cat_file(path) == b"third"


def test_conditional_create_of_a_multipart_upload(s3: S3Server) -> None:
    """Above 2 x chunksize s3fs uploads in parts and sends If-None-Match with the complete call;
    MinIO enforces it there too, and s3fs aborts the losing upload."""
    fs = s3.filesystem()
    bucket = s3.new_bucket()
    path = f"{bucket}/big.bin"
    first, second = b"a" * (11 * MiB), b"b" * (11 * MiB)

    fs.pipe_file(path, first, mode="create", chunksize=5 * MiB)
    with pytest.raises(OSError) as raised:
        fs.pipe_file(path, second, mode="create", chunksize=5 * MiB)

    assert type(raised.value) is OSError and is_create_conflict(raised.value)
    assert fs.cat_file(path) == first
    assert fs.info(path)["ETag"].endswith('-3"')  # a 3-part upload, so really the multipart path
    assert fs.call_s3("list_multipart_uploads", Bucket=bucket).get("Uploads", []) == []


@pytest.mark.parametrize(("size", "rounds", "writers"), [(64, 10, 8), (11 * MiB, 2, 4)])
def test_racing_creates_have_exactly_one_winner(s3: S3Server, size: int, rounds: int, writers: int) -> None:
    """Writers with their own clients create the same key at the same moment: one wins, every
    other gets the 412 conflict, and the stored object is the winner's, whole."""
    bucket = s3.new_bucket()
    clients = [s3.filesystem() for _ in range(writers)]
    for client in clients:
        client.ls(bucket)  # connect before the race, so the requests really overlap

    for round_ in range(rounds):
        path = f"{bucket}/race-{round_}"
        start = threading.Barrier(writers)
        outcomes: list[BaseException | str] = ["did not finish"] * writers

        def create(
            i: int, path: str = path, start: threading.Barrier = start, outcomes: list[Any] = outcomes
        ) -> None:
            start.wait()
            try:
                clients[i].pipe_file(path, bytes([i]) * size, mode="create", chunksize=5 * MiB)
            except Exception as error:
                outcomes[i] = error
            else:
                outcomes[i] = "won"

        threads = [threading.Thread(target=create, args=(i,)) for i in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)

        winners = [i for i, outcome in enumerate(outcomes) if outcome == "won"]
        assert len(winners) == 1, outcomes
        losers = [o for o in outcomes if o != "won"]
        assert all(isinstance(o, BaseException) and is_create_conflict(o) for o in losers), outcomes
        assert clients[0].cat_file(path) == bytes(winners) * size


_CREATE_IN_SUBPROCESS = textwrap.dedent(
    """
    import json, sys
    import fsspec

    path = sys.argv[1]
    fs = fsspec.filesystem("s3")  # configured only by the environment: s3.env()
    fs.ls(path.split("/")[0])
    print("ready", flush=True)
    sys.stdin.readline()
    try:
        fs.pipe_file(path, sys.argv[2].encode(), mode="create")
    except OSError as error:
        response = getattr(error.__cause__, "response", {})
        print(json.dumps({"lost": type(error).__name__, "code": response["Error"]["Code"]}))
    else:
        print(json.dumps({"won": True}))
    """
)


def test_racing_creates_across_processes(s3: S3Server, tmp_path: Path) -> None:
    """The same race between processes that know the server only through `s3.env()`."""
    path = f"{s3.new_bucket()}/registry/churn/v1"
    # Only what Python needs, and a HOME without ~/.aws: nothing of the developer's AWS setup
    # (AWS_PROFILE, ~/.aws/config, proxies) may help or hinder.
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    env.update(HOME=str(tmp_path), **s3.env())
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CREATE_IN_SUBPROCESS, path, f"writer-{i}"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    try:
        for proc in procs:  # all imported and connected...
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:  # ...then all released at once
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [json.loads(proc.communicate(timeout=60)[0]) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()

    winners = [i for i, result in enumerate(results) if result.get("won")]
    assert len(winners) == 1, results
    losers = [result for result in results if not result.get("won")]
    assert losers == [{"lost": "OSError", "code": "PreconditionFailed"}] * 3
    assert s3.filesystem().cat_file(path) == f"writer-{winners[0]}".encode()


def test_listing_is_consistent_right_after_writes_and_deletes(s3: S3Server) -> None:
    """A second client (its own listings cache, so only the server answers) sees each write,
    overwrite and delete in the very next request: no eventual consistency to wait out."""
    bucket = s3.new_bucket()
    writer, reader = s3.filesystem(), s3.filesystem(use_listings_cache=False)
    prefix = f"{bucket}/models/churn"
    expected: set[str] = set()
    for version in range(30):
        path = f"{prefix}/v{version:03d}"
        writer.pipe_file(path, b"%d" % version)
        expected.add(path)
        assert set(reader.ls(prefix, detail=False, refresh=True)) == expected
        assert reader.cat_file(path) == b"%d" % version
    writer.pipe_file(f"{prefix}/v000", b"overwritten")
    assert reader.cat_file(f"{prefix}/v000") == b"overwritten"
    for path in sorted(expected):
        writer.rm_file(path)
        expected.discard(path)
        assert set(reader.find(bucket, refresh=True)) == expected
    assert reader.find(bucket, refresh=True) == []


def test_server_runs_the_pinned_minio(s3: S3Server) -> None:
    version = subprocess.run([str(s3.binary), "--version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith("minio version ")
    if "SHIPYARD_MINIO" not in os.environ:  # an explicitly chosen binary may be any build
        assert f"commit-id={pinned_minio_version().rsplit('-', 1)[1]}" in version
