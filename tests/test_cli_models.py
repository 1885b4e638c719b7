"""`wan models …`: human and JSON output, exit codes, progress only on a terminal."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    ROOT,
    SYNTH_ID,
    make_synth_folder,
    small_filesystem,
    synth_model_entry,
    write_manifest,
)
from tests.hfrepo import MIB, add_synth_repo, expected_files, hf_manifest, hub_env
from tests.hubserver import HubServer
from wan_desktop.models.partials import staged_part_bytes


def wan(
    *args: str, env: dict[str, str] | None = None, **kw: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wan_desktop.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
        **kw,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"MODELS_ROOT": str(tmp_path / "models")}


def test_version() -> None:
    out = wan("--version")
    assert out.returncode == 0 and out.stdout.startswith("wan-desktop ")


def test_list_json_schema(env: dict[str, str]) -> None:
    out = wan("models", "list", "--json", env=env)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["schema"] == "wan.models.list/1" and doc["dev_mode"] is False
    t2v = doc["models"][0]
    assert t2v["id"] == "t2v-A14B@2.2.0" and t2v["aliases"] == ["T2V-A14B"]
    assert t2v["selected_variant"] == "bf16"
    tiny = next(v for v in t2v["variants"] if v["name"] == "tiny")
    assert tiny["development"] and "random weights" in tiny["label"]
    assert tiny["state"] == "NOT_PRESENT"


def test_list_in_dev_mode_selects_tiny(env: dict[str, str]) -> None:
    doc = json.loads(wan("--dev", "models", "list", "--json", env=env).stdout)
    assert doc["dev_mode"] is True
    assert {m["selected_variant"] for m in doc["models"]} == {"tiny"}
    human = wan("models", "list", env={**env, "WAN_DEV_MODE": "1"}).stdout
    assert "development mode" in human and "random weights" in human


def test_check_reports_setup_without_importing_torch(env: dict[str, str]) -> None:
    code = (
        "import sys, json, io, contextlib\n"
        "from wan_desktop.cli import main\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    rc = main(['models', 'check', '--json'])\n"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'PySide6')\n"
        "         if m in sys.modules]\n"
        "print(json.dumps({'rc': rc, 'heavy': heavy, 'doc': json.loads(buf.getvalue())}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=60,
    )
    res = json.loads(out.stdout)
    assert res["rc"] == 0 and res["heavy"] == []
    doc = res["doc"]
    assert doc["schema"] == "wan.models.check/1" and doc["ok"]
    assert {c["name"] for c in doc["checks"]} == {
        "manifest",
        "models_root",
        "free_space",
        "engine_packages",
    }
    assert doc["models_root"] == env["MODELS_ROOT"]


def test_check_fails_on_a_broken_manifest(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("schema_version = 9\n")
    out = wan("models", "check", env={**env, "WAN_MODELS_MANIFEST": str(bad)})
    assert out.returncode == 1
    assert "[FAIL] manifest" in out.stdout and "update Wan Desktop" in out.stdout


def test_unknown_model_is_a_usage_error(env: dict[str, str]) -> None:
    out = wan("models", "status", "t2v-A99B", env=env)
    assert out.returncode == 2
    assert "error [MODEL_NOT_FOUND]" in out.stderr and "fix: choose one of" in out.stderr
    out = wan("models", "status", "T2V-A14B", "--variant", "fp4", "--json", env=env)
    assert out.returncode == 2
    err = json.loads(out.stdout)["error"]
    assert err["code"] == "VARIANT_NOT_FOUND" and "bf16, random, tiny" in err["fix"]


def test_ensure_verify_path_and_repair_round_trip(env: dict[str, str]) -> None:
    out = wan("--dev", "models", "ensure", "--only", "TI2V-5B", "--json", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert doc["schema"] == "wan.models.ensure/1" and doc["ok"]
    (res,) = doc["results"]
    assert res["variant"] == "tiny" and res["state"] == "COMPLETE" and res["development"]
    assert res["bytes_transferred"] == res["bytes_total"] > 0
    assert "\r" not in out.stderr, "no progress bar when not on a terminal"

    path = wan("--dev", "models", "path", "ti2v-5B", env=env)
    assert path.returncode == 0 and path.stdout.strip() == res["path"]

    verify = json.loads(wan("--dev", "models", "verify", "ti2v-5B", "--json", env=env).stdout)
    assert verify["schema"] == "wan.models.verify/1" and verify["ok"]

    weights = sorted(Path(res["path"]).glob("transformer/*.safetensors"))[0]
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    bad = wan("--dev", "models", "verify", "ti2v-5B", env=env)
    assert bad.returncode == 1 and "CORRUPT" in bad.stdout and "ensure --force" in bad.stdout
    status = json.loads(wan("--dev", "models", "status", "ti2v-5B", "--json", env=env).stdout)
    assert status["models"][0]["state"] == "CORRUPT"
    fixed = wan("--dev", "models", "ensure", "--force", "--only", "ti2v-5B", env=env)
    assert fixed.returncode == 0, fixed.stderr
    assert wan("--dev", "models", "verify", "ti2v-5B", env=env).returncode == 0


def test_path_of_a_missing_model_exits_1(env: dict[str, str]) -> None:
    out = wan("models", "path", "T2V-A14B", env=env)
    assert out.returncode == 1
    assert out.stdout.strip().endswith("wan22/t2v-A14B@2.2.0")
    assert "ensure --only t2v-A14B@2.2.0" in out.stderr


def test_failed_ensure_exits_1_and_names_each_source(env: dict[str, str], tmp_path: Path) -> None:
    manifest = write_manifest(
        tmp_path / "m.toml",
        {
            SYNTH_ID: synth_model_entry(
                ["local://${WAN_TEST_UNSET}/a", f"local://{tmp_path}/none"]
            ),
        },
    )
    out = wan(
        "models",
        "ensure",
        "--only",
        SYNTH_ID,
        "--json",
        env={**env, "WAN_MODELS_MANIFEST": str(manifest)},
    )
    assert out.returncode == 1
    (res,) = json.loads(out.stdout)["results"]
    attempts = res["error"]["details"]["attempts"]
    assert [a["source"] for a in attempts] == ["local mirror", f"local://{tmp_path}/none"]
    assert attempts[0]["message"] == "not set (WAN_TEST_UNSET)"
    assert [a["configured"] for a in attempts] == [False, True]


def test_failed_ensure_messages_show_resolved_sources_never_templates(
    env: dict[str, str],
) -> None:
    # The real manifest: a local mirror and S3 that are not configured, and the Hub offline.
    out = wan(
        "models", "ensure", "--only", "T2V-A14B", "--json", env={**env, "HF_HUB_OFFLINE": "1"}
    )
    assert out.returncode == 1
    err = json.loads(out.stdout)["results"][0]["error"]
    assert "local mirror: not set (WAN_LOCAL_MIRROR)" in err["message"]
    assert "S3 bucket: not set (WAN_S3_BUCKET)" in err["message"]
    assert "hf://Wan-AI/Wan2.2-T2V-A14B-Diffusers@main: [SOURCE_UNAVAILABLE]" in err["message"]
    for template in ("${", "{model_dir}"):
        assert template not in out.stdout and template not in out.stderr
    human = wan("models", "ensure", "--only", "T2V-A14B", env={**env, "HF_HUB_OFFLINE": "1"})
    assert "local mirror: not set (WAN_LOCAL_MIRROR)" in human.stderr
    assert "${" not in human.stderr


def test_progress_bar_on_a_terminal(env: dict[str, str], tmp_path: Path) -> None:
    synth = make_synth_folder(tmp_path / "mirror", {"transformer/w.safetensors": 8 << 20})
    manifest = write_manifest(
        tmp_path / "m.toml",
        {
            SYNTH_ID: synth_model_entry([f"local://{synth.path}"], synth.manifest_files()),
        },
    )
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wan_desktop.cli", "models", "ensure", "--only", SYNTH_ID],
        stdout=subprocess.PIPE,
        stderr=follower,
        cwd=ROOT,
        env={**os.environ, **env, "WAN_MODELS_MANIFEST": str(manifest)},
    )
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 30)
        if not ready:
            break
        try:
            data = os.read(leader, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(30) == 0
    os.close(leader)
    term = b"".join(chunks).decode()
    assert "\r" in term and "100%" in term and SYNTH_ID in term
    assert proc.stdout is not None and "COMPLETE" in proc.stdout.read().decode()


def test_delete(env: dict[str, str], tmp_path: Path) -> None:
    synth = make_synth_folder(tmp_path / "mirror")
    manifest = write_manifest(
        tmp_path / "m.toml",
        {
            SYNTH_ID: synth_model_entry([f"local://{synth.path}"], synth.manifest_files()),
        },
    )
    env = {**env, "WAN_MODELS_MANIFEST": str(manifest)}
    assert wan("models", "ensure", "--only", SYNTH_ID, env=env).returncode == 0
    out = json.loads(wan("models", "delete", SYNTH_ID, "--json", env=env).stdout)
    assert out["bytes_freed"] == synth.total()
    status = json.loads(wan("models", "status", SYNTH_ID, "--json", env=env).stdout)
    assert status["models"][0]["state"] == "NOT_PRESENT"


def test_disk_commands_json(env: dict[str, str], tmp_path: Path) -> None:
    synth = make_synth_folder(tmp_path / "mirror")
    manifest = write_manifest(
        tmp_path / "m.toml",
        {SYNTH_ID: synth_model_entry([f"local://{synth.path}"], synth.manifest_files())},
    )
    env = {**env, "WAN_MODELS_MANIFEST": str(manifest)}
    assert wan("models", "ensure", "--only", SYNTH_ID, env=env).returncode == 0
    pin = json.loads(wan("models", "pin", SYNTH_ID, "--json", env=env).stdout)
    assert pin == {
        "schema": "wan.models.pin/1",
        "model_id": SYNTH_ID,
        "variant": "full",
        "pinned": True,
        "changed": True,
    }
    usage = json.loads(wan("models", "disk-usage", "--json", env=env).stdout)
    assert usage["schema"] == "wan.models.disk_usage/1"
    (model,) = usage["models"]
    assert model["pinned"] and model["state"] == "COMPLETE" and model["bytes"] >= synth.total()
    assert usage["total_bytes"] == model["bytes"] and usage["quota_bytes"] is None
    gc = json.loads(wan("models", "gc", "--max-size", "1KB", "--json", env=env).stdout)
    assert gc["schema"] == "wan.models.gc/1" and gc["removed"] == []
    assert gc["kept"][0]["reason"] == "pinned" and gc["max_size_bytes"] == 1000
    unpin = json.loads(wan("models", "unpin", SYNTH_ID, "--json", env=env).stdout)
    assert unpin["pinned"] is False and unpin["changed"] is True
    dry = json.loads(
        wan("models", "gc", "--max-size", "1KB", "--dry-run", "--json", env=env).stdout
    )
    assert dry["dry_run"] and [d["dir_name"] for d in dry["removed"]] == [SYNTH_ID]
    assert (
        json.loads(wan("models", "status", SYNTH_ID, "--json", env=env).stdout)["models"][0][
            "state"
        ]
        == "COMPLETE"
    ), "a dry run removes nothing"
    human = wan("models", "gc", "--max-age", "0s", env=env)
    assert human.returncode == 0 and f"removed: {SYNTH_ID}" in human.stdout
    assert "unused for" in human.stdout
    bad = wan("models", "gc", "--max-size", "lots", env=env)
    assert bad.returncode == 2 and "200GB" in bad.stderr


# ------------------------------------------------------------- a models folder that cannot be used


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Mounts real tmpfs filesystems of a given size (read-only if asked) for the test."""
    names = (tmp_path / f"fs{i}" for i in itertools.count())
    with contextlib.ExitStack() as stack:

        def mount(size: str, *, read_only: bool = False) -> Path:
            return stack.enter_context(small_filesystem(next(names), size, read_only=read_only))

        yield mount


def ensure_error(out: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 1, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert doc["schema"] == "wan.models.ensure/1" and doc["ok"] is False
    (res,) = doc["results"]
    err: dict[str, Any] = res["error"]
    assert err["message"] and err["fix"]
    return err


def test_models_root_under_a_regular_file_is_a_coded_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = {"MODELS_ROOT": str(blocker / "models")}
    err = ensure_error(wan("--dev", "models", "ensure", "--only", "TI2V-5B", "--json", env=env))
    assert err["code"] == "PATH_INVALID"
    assert f"{blocker} is a file, not a folder" in err["message"]
    assert "MODELS_ROOT" in err["fix"]
    # The other commands say the same, without a traceback.
    out = wan("--dev", "models", "delete", "TI2V-5B", "--json", env=env)
    assert "Traceback" not in out.stderr and out.returncode == 1
    assert json.loads(out.stdout)["error"]["code"] == "PATH_INVALID"
    assert blocker.read_text() == "not a folder", "the file is left alone"
    check = json.loads(wan("--dev", "models", "check", "--json", env=env).stdout)
    assert not next(c for c in check["checks"] if c["name"] == "models_root")["ok"]


def test_read_only_models_root_is_a_coded_error(
    tmp_path: Path, small_fs: Callable[..., Path]
) -> None:
    root = small_fs("1m", read_only=True) / "models"
    err = ensure_error(
        wan(
            "--dev",
            "models",
            "ensure",
            "--only",
            "TI2V-5B",
            "--json",
            env={"MODELS_ROOT": str(root)},
        )
    )
    assert err["code"] == "PATH_INVALID"
    assert "read-only" in err["message"] and str(root) in err["message"]
    assert "MODELS_ROOT" in err["fix"]


@pytest.mark.parametrize("part_size", ["64MB", "1MB"], ids=["one-stream", "parallel-parts"])
def test_disk_filling_up_mid_download_is_no_space_and_keeps_what_arrived(
    tmp_path: Path, small_fs: Callable[..., Path], part_size: str
) -> None:
    fs = small_fs("24m")
    root = fs / "models"
    with HubServer() as hub:
        repo = add_synth_repo(hub)
        hub.rate_bps = MIB // 2  # per response: the download lasts seconds
        env = hub_env(
            hub,
            root,
            hf_manifest(tmp_path),
            WAN_FREE_SPACE_RESERVE_MB="0",
            HF_HUB_OFFLINE="0",
            WAN_PART_SIZE=part_size,
        )
        proc_args = [sys.executable, "-m", "wan_desktop.cli", "models", "ensure", "--json"]
        proc_args += ["--only", SYNTH_ID]
        proc = subprocess.Popen(
            proc_args,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # Once the staging folder counts some bytes, something else fills the disk.
        deadline = time.monotonic() + 60
        while staged_part_bytes(root / ".staging") == 0:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the download never started"
            time.sleep(0.02)
        filler = fs / "filler"
        with filler.open("wb", buffering=0) as fh, contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * (256 << 10))
        stdout, stderr = proc.communicate(timeout=120)
        err = ensure_error(subprocess.CompletedProcess(proc_args, proc.returncode, stdout, stderr))
        assert err["code"] == "NO_SPACE", err
        assert "gc" in err["fix"] and "resumes" in err["fix"]
        doc = json.loads(wan("models", "status", SYNTH_ID, "--json", env=env).stdout)
        status = doc["models"][0]
        assert status["state"] == "PARTIAL" and status["bytes_present"] > 0
        kept = status["bytes_present"]
        # Space again: the rerun completes and fetches only what was missing.
        filler.unlink()
        hub.rate_bps = None
        hub.clear_log()
        out = wan("models", "ensure", "--only", SYNTH_ID, "--json", env=env)
        assert out.returncode == 0, out.stdout + out.stderr
        total = sum(repo.files[p].content.size for p in expected_files(repo))
        # (Planning reads the small shard index again: a few hundred bytes.)
        assert hub.bytes_sent() <= total - kept + 4096


def test_status_after_a_checksum_failure_says_what_to_do(
    env: dict[str, str], tmp_path: Path
) -> None:
    synth = make_synth_folder(tmp_path / "mirror")
    files = synth.manifest_files()
    bad = next(f for f in files if f["path"].endswith(".safetensors"))
    bad["sha256"] = "0" * 64  # the manifest is wrong, the source is fine
    manifest = write_manifest(
        tmp_path / "m.toml", {SYNTH_ID: synth_model_entry([f"local://{synth.path}"], files)}
    )
    env = {**env, "WAN_MODELS_MANIFEST": str(manifest)}
    out = wan("models", "ensure", "--only", SYNTH_ID, "--json", env=env)
    assert out.returncode == 1
    err = json.loads(out.stdout)["results"][0]["error"]
    assert err["code"] == "CHECKSUM_FAIL" and f"wan models lock {SYNTH_ID}" in err["fix"]
    for _ in range(2):  # a rerun fails the same way, and status keeps saying why
        st = json.loads(wan("models", "status", SYNTH_ID, "--json", env=env).stdout)["models"][0]
        assert st["state"] == "PARTIAL"
        assert "interrupted" not in st["reason"] and "resumes" not in st["reason"]
        assert f"{bad['path']} failed verification from local://{synth.path}" in st["reason"]
        assert "0" * 64 in st["reason"], "names the expected hash"
        assert f"wan models lock {SYNTH_ID}" in st["reason"] and "manifest" in st["reason"]
        assert wan("models", "ensure", "--only", SYNTH_ID, env=env).returncode == 1
    human = wan("models", "status", SYNTH_ID, env=env).stdout
    assert "failed verification" in human
    # Doing what it says: the hashes from the source, then the download completes.
    assert wan("models", "lock", SYNTH_ID, env=env).returncode == 0
    fixed = wan("models", "ensure", "--only", SYNTH_ID, "--json", env=env)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    st = json.loads(wan("models", "status", SYNTH_ID, "--json", env=env).stdout)["models"][0]
    assert st["state"] == "COMPLETE"
