"""What an attack on the training loop and the feature store broke (issue: hardening), each reproduced.

One small workspace of its own (data, Feast repo, registry), because these tests damage data, copy
checkouts, corrupt champions and fill disks.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from pipelines import local_run
from shipyard import featurestore, steps
from shipyard.cli import main
from shipyard.errors import RegistryError, ShipyardError
from shipyard.params import Gates
from shipyard.registry import ModelRegistry
from shipyard.settings import Settings
from tests.integration.training.conftest import Workspace, make_workspace
from tests.support import require
from tests.unit.test_registry import Backend, _kill_during_registration

DATA = {"customers": 600, "tickets": 5_000, "start": date(2025, 1, 1), "end": date(2025, 6, 30), "seed": 3}
PROFILE, ACTIVITY = "customer_profile.parquet", "customer_activity.parquet"


@dataclass(frozen=True)
class Trained:
    ws: Workspace
    version: str
    run_dir: Path

    @property
    def settings(self) -> Settings:
        return self.ws.settings


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    ws = make_workspace(tmp_path_factory.mktemp("hardening"), DATA)
    with open(os.devnull, "w") as sink:
        result = local_run.run(ws.settings, say=sink)
    assert result.summary.status == "champion", result.summary.reason
    runs = sorted(p for p in Path(ws.settings.pipeline_root).iterdir() if p.is_dir())
    return Trained(ws, result.summary.version, runs[-1])


def _online(settings: Settings, customers: list[int], feature: str) -> list[object]:
    store = featurestore.open_store(settings.feature_repo, settings.feature_store_yaml)
    rows = [{"customer_id": c} for c in customers]
    values: list[object] = store.get_online_features(features=[feature], entity_rows=rows).to_dict()[
        feature.split(":")[1]
    ]
    return values


def _data_copy(trained: Trained, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(trained.settings.data_dir, target, ignore=shutil.ignore_patterns("*.db"))
    return target


def _latest_profiles(profile: pd.DataFrame) -> pd.Index:
    return profile.sort_values("event_timestamp").groupby("customer_id").tail(1).index


# -- 6. validate first; only validated (and cleaned) data reaches the online store -------------------
def test_a_run_that_fails_validation_leaves_the_online_store_untouched(
    trained: Trained, tmp_path: Path
) -> None:
    data = _data_copy(trained, tmp_path)
    profile = pd.read_parquet(data / PROFILE)
    latest = _latest_profiles(profile)
    customers = [int(c) for c in profile.loc[latest, "customer_id"].head(20)]
    before = _online(trained.settings, customers, "customer_profile:region")
    profile.loc[latest, "region"] = "mars"  # every customer's newest snapshot: far beyond tolerance
    profile.to_parquet(data / PROFILE)
    settings = trained.settings.model_copy(
        update={"data_dir": data, "model_registry": str(tmp_path / "models")}
    )
    with pytest.raises(ShipyardError, match=r"validate: .*customer_profile column 'region' breaks rule"):
        local_run.run(settings, say=open(os.devnull, "w"))  # noqa: SIM115
    assert _online(trained.settings, customers, "customer_profile:region") == before
    assert "mars" not in before


def test_tolerated_bad_values_are_excluded_from_serving_and_training(
    trained: Trained, tmp_path: Path
) -> None:
    data = _data_copy(trained, tmp_path)
    profile = pd.read_parquet(data / PROFILE)
    victim = profile.loc[_latest_profiles(profile)].iloc[0]
    customer, region = int(victim["customer_id"]), str(victim["region"])
    profile.loc[victim.name, "region"] = "mars"  # one row: within the tolerated violation rate
    profile.to_parquet(data / PROFILE)
    settings = trained.settings.model_copy(
        update={
            "data_dir": data,
            "model_registry": str(tmp_path / "models"),
            "pipeline_root": str(tmp_path / "root"),
        }
    )
    with open(os.devnull, "w") as sink:
        result = local_run.run(settings, say=sink)
    assert result.summary.created
    # The online store serves the customer's previous, valid snapshot, never "mars".
    assert _online(settings, [customer], "customer_profile:region") == [region]
    run_dir = next(p for p in (tmp_path / "root").iterdir() if p.is_dir())
    report = (run_dir / "validate" / "report").read_text()
    assert re.search(r"\| customer_profile \| \d+ \| 1 \|", report), report  # one row excluded, said so
    training_set = pd.read_parquet(run_dir / "training-set" / "dataset")
    assert "mars" not in set(training_set["region"].dropna())


def test_an_empty_feature_table_is_named(trained: Trained, tmp_path: Path) -> None:
    data = _data_copy(trained, tmp_path)
    profile = pd.read_parquet(data / PROFILE)
    profile.iloc[0:0].to_parquet(data / PROFILE)
    with pytest.raises(ShipyardError, match=r"customer_profile column '<table>' breaks rule 'not_empty'"):
        local_run.run_pipeline(trained.settings, say=open(os.devnull, "w"), source_dir=str(data))  # noqa: SIM115


# -- 7. a copied checkout never touches the original's online store ----------------------------------
def test_a_copied_checkout_keeps_the_originals_online_store(trained: Trained, tmp_path: Path) -> None:
    original = trained.settings
    profile = pd.read_parquet(original.data_dir / PROFILE)
    customers = [int(c) for c in profile["customer_id"].drop_duplicates().head(5)]
    before = _online(original, customers, "customer_profile:segment")
    assert all(v is not None for v in before)
    copy = tmp_path / "checkout-copy"
    shutil.copytree(original.feature_repo, copy / "feature_repo")
    note = featurestore.apply(copy / "feature_repo")
    # The original still answers, from its own tables; the copy has its own registry now.
    assert _online(original, customers, "customer_profile:segment") == before
    assert note is not None and "set it aside" in note
    assert featurestore.apply(copy / "feature_repo") is None  # the copy's registry is its own now


def test_a_broken_local_store_is_recovered_by_one_command(trained: Trained, tmp_path: Path) -> None:
    repo = tmp_path / "checkout" / "feature_repo"
    shutil.copytree(trained.settings.feature_repo, repo)
    featurestore.apply(repo)
    (repo / "data" / "online_store.db").write_bytes(b"not a database at all")
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(
        f"environment: local\nproject: ticket_routing\nfeature_repo: {repo}\ndata_dir: {repo / 'data'}\n"
    )
    result = CliRunner().invoke(main, ["--settings", str(settings_file), "features", "reset"])
    assert result.exit_code == 0, result.output
    assert "removed" in result.output and "applied" in result.output
    store = featurestore.open_store(repo)
    assert store.get_online_features(
        features=["customer_profile:segment"], entity_rows=[{"customer_id": 1}]
    ).to_dict()["segment"] == [None]


# -- 8. ENOSPC during registration: a clear error, nothing registered ---------------------------------
@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real full disk: a 48 KiB tmpfs, smaller than one model version (~100 KiB). Root can mount
    one here; faking ENOSPC with a patched write would not test what the kernel really does."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mount)], capture_output=True
    )
    require(mounted.returncode == 0, f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_during_registration_is_a_clear_error(trained: Trained, tiny_disk: Path) -> None:
    registry = str(tiny_disk / "models")
    run = trained.run_dir
    with pytest.raises(RegistryError, match=r"registering into .*: No space left on device; nothing was"):
        steps.register_step(
            "ticket_routing",
            str(run / "train" / "model"),
            str(run / "evaluate" / "evaluation"),
            registry,
            "ticket_routing_v1",
            "data-x",
            True,
            "",
        )
    reg = ModelRegistry(registry)
    assert reg.versions() == [] and reg.champion() is None
    leftovers = [p.name for p in (tiny_disk / "models").iterdir()] if (tiny_disk / "models").exists() else []
    assert not [n for n in leftovers if n.startswith(".staging")], leftovers


# -- 9. a corrupt champion: found up front, shown, quarantined, and training goes on ----------------
def test_a_corrupt_champion_is_shown_quarantined_and_does_not_block_training(
    trained: Trained, tmp_path: Path
) -> None:
    registry = tmp_path / "models"
    shutil.copytree(trained.settings.model_registry, registry, symlinks=True)
    settings = trained.settings.model_copy(
        update={"model_registry": str(registry), "pipeline_root": str(tmp_path / "root")}
    )
    reg = ModelRegistry(str(registry))
    champion = reg.champion()
    assert champion is not None
    card = Path(reg.uri(champion.version)) / "MODEL_CARD.md"
    card.chmod(0o644)
    card.write_text(card.read_text() + "tampered\n")
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(f"environment: local\nproject: ticket_routing\nmodel_registry: {registry}\n")
    cli = CliRunner()
    listed = cli.invoke(main, ["--settings", str(settings_file), "models", "list"])
    assert listed.exit_code == 0 and "CORRUPT" in listed.output and "MODEL_CARD.md" in listed.output

    said = tmp_path / "said.txt"
    with said.open("w") as say:
        record = local_run.run_pipeline(
            # Other gates: another fingerprint, so a new version (the same data would dedupe to v1).
            settings,
            say=say,
            gates=Gates(min_baseline_lift=0.01).model_dump(mode="json"),
        )
    assert f"champion {champion.version} failed its integrity check" in said.read_text()
    assert record.created and record.status == "candidate"

    q = cli.invoke(
        main, ["--settings", str(settings_file), "models", "quarantine", champion.version, "--reason", "x"]
    )
    assert q.exit_code == 0, q.output
    assert reg.champion() is None and reg.get(champion.version).status == "quarantined"
    refused = cli.invoke(
        main, ["--settings", str(settings_file), "models", "promote", champion.version, "--reason", "y"]
    )
    assert refused.exit_code == 2 and "cannot be promoted" in refused.output
    promoted = cli.invoke(
        main, ["--settings", str(settings_file), "models", "promote", record.version, "--reason", "z"]
    )
    assert promoted.exit_code == 0, promoted.output
    assert reg.champion() is not None and reg.champion().version == record.version  # type: ignore[union-attr]


# -- 10. killed registrations do not leak ------------------------------------------------------------
def test_leftovers_of_killed_registrations_are_cleaned_by_the_next_one(
    trained: Trained, tmp_path: Path
) -> None:
    backend = Backend(str(tmp_path / "models"))
    for stage in ("version", "version", "index"):
        _kill_during_registration(backend, stage)
    reg = backend.registry()
    assert len(reg.orphans()) == 3
    old = time.time() - 2 * 3600  # older than the grace period: nobody is still writing them
    for path in (tmp_path / "models").rglob("*"):
        os.utime(path, (old, old), follow_symlinks=False)
    run = trained.run_dir
    steps.register_step(
        "ticket_routing",
        str(run / "train" / "model"),
        str(run / "evaluate" / "evaluation"),
        backend.uri,
        "ticket_routing_v1",
        "data-y",
        True,
        "",
    )
    assert reg.orphans() == []
    champion = reg.champion()
    assert champion is not None and champion.version == "v1"
