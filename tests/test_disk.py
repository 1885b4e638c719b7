"""Disk: usage, pins, leases of models in use, LRU/TTL garbage collection, quotas, settings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT, make_store, make_synth_folder, synth_model_entry, write_manifest
from wan_desktop.models import gc
from wan_desktop.models.config import OrchestratorConfig
from wan_desktop.models.errors import ErrorCode, QuotaExceededError, SettingsError
from wan_desktop.models.settings import (
    Settings,
    load_settings,
    parse_duration,
    parse_size,
    save_settings,
)
from wan_desktop.models.store import ModelStore

SIZE = 1_000_000
DAY = 86400.0


def models_manifest(tmp_path: Path, n: int) -> Path:
    models: dict[str, Any] = {}
    for i in range(n):
        synth = make_synth_folder(tmp_path / f"src{i}", {"transformer/w.safetensors": SIZE}, seed=i)
        entry = synth_model_entry([f"local://{synth.path}"], synth.manifest_files())
        entry["aliases"] = [f"M{i}"]
        models[f"m{i}@1.0.0"] = entry
    return write_manifest(tmp_path / "models.toml", models)


def used_at(store: ModelStore, model: str, when: float) -> None:
    spec, var = store.resolve(model)
    f = store.paths.last_used_file(store.dir_name(spec, var))
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps({"at": when}))


@pytest.fixture
def four(tmp_path: Path) -> ModelStore:
    store = make_store(tmp_path / "models", models_manifest(tmp_path, 4))
    now = time.time()
    for i in range(4):
        store.ensure(f"m{i}")
        used_at(store, f"m{i}", now - (4 - i) * DAY)  # m0 the least recently used
    return store


def names(decisions: Any) -> list[str]:
    return [d.dir_name for d in decisions]


def test_disk_usage_lists_models_with_size_pin_and_last_use(four: ModelStore) -> None:
    four.pin("m1")
    usage = four.disk_usage()
    assert [m.dir_name for m in usage.models] == [f"m{i}@1.0.0" for i in range(4)]
    assert all(m.complete and m.known and m.bytes > SIZE for m in usage.models)
    assert usage.total_bytes == sum(m.bytes for m in usage.models)
    assert usage.family_bytes == {"wan22": usage.total_bytes}
    assert [m.pinned for m in usage.models] == [False, True, False, False]
    assert usage.models[0].last_used is not None
    assert usage.models[0].last_used < usage.models[3].last_used  # type: ignore[operator]


def test_a_broken_manifest_is_reported_beside_what_is_on_disk(four: ModelStore) -> None:
    """It used to be swallowed: every folder read "not in manifest" with no word of why."""
    four.config.manifest_path.write_text("[[model]\nid = ", "utf-8")
    broken = make_store(four.config.models_root, four.config.manifest_path)
    usage = broken.disk_usage()
    assert len(usage.models) == 4 and not any(m.known for m in usage.models)
    assert usage.manifest_error and "models.toml" in usage.manifest_error
    assert usage.to_dict()["manifest_error"] == usage.manifest_error


def test_gc_removes_lru_first_but_never_pinned_or_in_use(four: ModelStore) -> None:
    four.pin("m0")
    unit = four.disk_usage().models[0].bytes
    with four.use("m1"):
        plan = four.gc(max_size=2 * unit + 10, dry_run=True)
        assert names(plan.removed) == ["m2@1.0.0", "m3@1.0.0"]
        assert four.status("m2").complete, "a dry run removes nothing"
        report = four.gc(max_size=2 * unit + 10)
    assert names(report.removed) == ["m2@1.0.0", "m3@1.0.0"]
    assert report.reclaimed_bytes == 2 * unit
    kept = {d.dir_name: d.reason for d in report.kept}
    assert kept["m0@1.0.0"] == "pinned"
    assert kept["m1@1.0.0"] == f"in use by process {os.getpid()}"
    assert not four.status("m2").complete and not four.status("m3").complete
    assert four.status("m0").complete and four.status("m1").complete
    assert all("least recently used" in d.reason for d in report.removed)


def test_gc_max_age_removes_models_unused_for_longer(four: ModelStore) -> None:
    used_at(four, "m0", time.time() - 40 * DAY)
    report = four.gc(max_age_s=parse_duration("30d"))
    assert names(report.removed) == ["m0@1.0.0"]
    assert "unused for 40.0 days" in report.removed[0].reason
    assert {d.dir_name for d in report.kept} == {"m1@1.0.0", "m2@1.0.0", "m3@1.0.0"}


def test_a_lease_of_a_killed_process_does_not_protect_a_model(four: ModelStore) -> None:
    code = (
        "import sys, time; from tests.helpers import make_store; from pathlib import Path\n"
        "s = make_store(Path(sys.argv[1]), Path(sys.argv[2]))\n"
        "with s.use('m0'):\n"
        "    print('using', flush=True); time.sleep(60)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(four.config.models_root), str(four.config.manifest_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "using"
        kept = {d.dir_name: d.reason for d in four.gc(max_size=0, dry_run=True).kept}
        assert kept["m0@1.0.0"] == f"in use by process {child.pid}"
        child.send_signal(signal.SIGKILL)
        child.wait()
        report = four.gc(max_size=0)
        assert "m0@1.0.0" in names(report.removed), "the dead process's lease is stale"
    finally:
        child.kill()
        child.wait()


def test_quota_collects_the_least_recently_used_to_make_room(tmp_path: Path) -> None:
    manifest = models_manifest(tmp_path, 4)
    probe = make_store(tmp_path / "probe", manifest)
    probe.ensure("m0")
    unit = probe.disk_usage().total_bytes
    store = make_store(tmp_path / "models", manifest, quota_bytes=int(2.5 * unit))
    store.ensure("m0")
    store.ensure("m1")
    used_at(store, "m0", time.time() - DAY)
    store.ensure("m2")  # over the quota: m0, the least recently used, makes room
    assert not store.status("m0").complete
    assert store.status("m1").complete and store.status("m2").complete
    store.pin("m1")
    with store.use("m2"), pytest.raises(QuotaExceededError) as err:
        store.ensure("m3")
    assert err.value.code is ErrorCode.quota_exceeded
    assert "m1@1.0.0: pinned" in err.value.message
    assert "raise the quota" in (err.value.fix or "")


def test_family_quota(tmp_path: Path) -> None:
    manifest = models_manifest(tmp_path, 3)
    probe = make_store(tmp_path / "probe", manifest)
    probe.ensure("m0")
    unit = probe.disk_usage().total_bytes
    store = make_store(tmp_path / "models", manifest, family_quota_bytes={"wan22": int(1.5 * unit)})
    store.ensure("m0")
    store.ensure("m1")
    assert [m.dir_name for m in store.disk_usage().models] == ["m1@1.0.0"]


def test_settings_round_trip_keeps_comments(tmp_path: Path) -> None:
    path = tmp_path / "orchestrator.toml"
    path.write_text(
        '# my settings\nquota = "500GB"  # for the NAS\n[family_quota]\nwan22 = "300GiB"\n'
    )
    st = load_settings(path)
    assert st.quota_bytes == 500 * 10**9
    assert st.family_quota_bytes == {"wan22": 300 * 2**30}
    new = Settings(
        quota_bytes=200 * 10**9,
        family_quota_bytes=st.family_quota_bytes,
        max_age_s=parse_duration("30d"),
        max_concurrent_downloads=6,
        manifest_public_key="a" * 44,
    )
    save_settings(new, path)
    text = path.read_text()
    assert "# my settings" in text and "# for the NAS" in text
    assert load_settings(path) == new
    assert load_settings(tmp_path / "missing.toml") == Settings()


def test_environment_overrides_the_settings_file(tmp_path: Path) -> None:
    save_settings(
        Settings(quota_bytes=10**12, max_concurrent_downloads=2), tmp_path / "orchestrator.toml"
    )
    env = {"WAN_CONFIG_DIR": str(tmp_path)}
    cfg = OrchestratorConfig.from_env(env)
    assert cfg.quota_bytes == 10**12 and cfg.max_concurrent_downloads == 2
    cfg = OrchestratorConfig.from_env(
        {**env, "WAN_QUOTA": "50GB", "WAN_MAX_CONCURRENT_DOWNLOADS": "8"}
    )
    assert cfg.quota_bytes == 50 * 10**9 and cfg.max_concurrent_downloads == 8
    assert cfg.settings_path == tmp_path / "orchestrator.toml"


@pytest.mark.parametrize("bad", ['quota = "lots"', "colour = 1", "parts_per_file = 0", "[x"])
def test_invalid_settings_say_what_to_fix(tmp_path: Path, bad: str) -> None:
    (tmp_path / "orchestrator.toml").write_text(bad + "\n")
    with pytest.raises(SettingsError) as err:
        load_settings(tmp_path / "orchestrator.toml")
    assert err.value.code is ErrorCode.settings_invalid and err.value.fix


def test_units() -> None:
    assert parse_size("200GB") == 200 * 10**9
    assert parse_size("64MiB") == 64 * 2**20
    assert parse_size("1.5 TB") == 1_500_000_000_000
    assert parse_size(1024) == 1024
    assert parse_duration("30d") == 30 * DAY
    assert parse_duration("12h") == 12 * 3600
    with pytest.raises(ValueError, match="200XB"):
        parse_size("200XB")


def test_plan_gc_is_pure_and_explains_every_model(four: ModelStore) -> None:
    usage = four.disk_usage()
    remove, keep = gc.plan_gc(usage, max_size=None, max_age_s=None)
    assert remove == [] and len(keep) == 4
    assert all(k.reason.startswith("within limits") for k in keep)


def test_delete_refuses_a_model_in_use(four: ModelStore) -> None:
    from wan_desktop.models.errors import InUseError

    with four.use("m0"), pytest.raises(InUseError) as err:
        four.delete("m0")
    assert err.value.code is ErrorCode.in_use and str(os.getpid()) in err.value.message
    assert four.status("m0").complete
    assert four.delete("m0") > SIZE, "free again once the lease is gone"
