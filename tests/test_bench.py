"""``wan bench`` on the CPU with the tiny variants, and the planner learning from its figures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REAL_MANIFEST, ROOT, make_store
from wan_desktop.engine.hardware import read_profile
from wan_desktop.engine.measurements import MeasurementStore, measured_plan
from wan_desktop.engine.model_facts import facts_for
from wan_desktop.engine.planner import CPU_LADDER, STRATEGIES, JobShape, estimate_minutes, plan

pytest.importorskip("torch")
pytest.importorskip("diffusers")

SMALL = ["--resolution", "96x64", "--frames", "9", "--steps", "3"]


def wan_bench(*args: str, models: Path, data: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MODELS_ROOT": str(models),
        "WAN_DATA_DIR": str(data),
        "PYTHONPATH": str(ROOT),
    }
    for name in ("WAN_DEV_MODE", "WAN_HARDWARE_PROFILE", "WAN_DEVICE"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "wan_desktop.cli", "bench", *args],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def models(tiny_models_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "models"
    shutil.copytree(tiny_models_root, root, symlinks=True)
    return root


def check_result(result: dict[str, Any], experts: set[str]) -> None:
    assert result["ok"] is True and result["error"] is None
    m, p = result["measured"], result["predicted"]
    assert m["load_s"] > 0 and m["text_encode_s"] > 0 and m["vae_decode_s"] > 0
    assert len(m["step_times_s"]) == 3 and all(s > 0 for s in m["step_times_s"])
    assert set(m["experts"]) == experts == set(m["s_per_step"])
    assert m["s_per_step_mean"] == pytest.approx(sum(m["step_times_s"][1:]) / 2, abs=1e-3)
    assert m["peak_ram_gb"] > 0.1  # torch alone holds more than this
    # No GPU: no VRAM figures, measured or predicted.
    assert m["peak_vram_allocated_gb"] is None and m["peak_vram_nvml_gb"] is None
    assert p["vram_gb"] is None and p["s_per_step"] > 0 and p["ram_gb"] > 0
    assert p["vae_decode_s"] > 0
    assert result["ratio"]["s_per_step"] == pytest.approx(
        p["s_per_step"] / m["s_per_step_mean"], rel=0.01
    )


def test_wan_bench_tiny_runs_every_cpu_strategy_and_the_planner_learns_from_it(
    models: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    out = tmp_path / "bench.json"
    proc = wan_bench("--tiny", *SMALL, "--json", "--out", str(out), models=models, data=data)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert json.loads(out.read_text("utf-8")) == doc
    assert doc["schema"] == "wan.bench/1"
    assert (doc["model"], doc["variant"], doc["development"]) == ("t2v-A14B@2.2.0", "tiny", True)
    assert doc["label"] == "development variant: random weights, output is noise"
    assert doc["device"] == "cpu" and doc["hardware"]["has_gpu"] is False
    assert doc["job"] == {"width": 96, "height": 64, "frames": 9, "steps": 3, "guidance": True}
    # Every strategy of the CPU ladder fits a tiny model, so each ran.
    assert [r["strategy"] for r in doc["results"]] == [s.name for s in CPU_LADDER]
    assert doc["skipped"] == []
    for result in doc["results"]:
        check_result(result, {"high_noise", "low_noise"})
    # flow shift 3 over 3 steps: t = 1000 (high noise), then 857 and 600 (low noise).
    assert doc["results"][0]["measured"]["experts"] == ["high_noise", "low_noise", "low_noise"]

    # What it measured is what the planner now estimates these jobs by.
    assert doc["recorded"] is True
    store = make_store(models, REAL_MANIFEST)
    spec, var = store.resolve("T2V-A14B", "tiny")
    facts = facts_for(spec, store.status(spec.id, var.name).path)
    job = JobShape(96, 64, 9, 3)
    profile = read_profile("cpu")
    predicted = plan(facts, var.dtype, job, profile)
    assert predicted.basis == "predicted"
    learnt = measured_plan(data, spec.id, var.name, predicted, facts, job, profile)
    assert learnt.basis == "measured on this computer"
    assert learnt.estimate()["basis"] == "measured on this computer"
    cpu = doc["results"][0]["measured"]
    assert learnt.ram_gb == pytest.approx(cpu["peak_ram_gb"], abs=0.01)
    rest = estimate_minutes(facts, "float32", replace(job, steps=0), profile, STRATEGIES["cpu"])
    assert learnt.minutes == round(rest + cpu["s_per_step_mean"] * 3 / 60, 2)
    stored = MeasurementStore(data).all()
    assert {k.split("|")[2] for k in stored} == {"cpu", "cpu_fp8"}
    assert {m.source for m in stored.values()} == {"bench"}


def test_wan_bench_tiny_single_expert_model_and_image_model(models: Path, tmp_path: Path) -> None:
    for model, experts, strategy in (
        ("TI2V-5B", {"transformer"}, ["--strategy", "all", "--time-budget", "0"]),
        ("I2V-A14B", {"high_noise", "low_noise"}, ["--strategy", "best"]),
    ):
        proc = wan_bench(
            "--tiny", "--model", model, *SMALL, *strategy, "--json", "--no-record",
            models=models, data=tmp_path / "data",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        assert [r["strategy"] for r in doc["results"]] == [doc["planner_choice"]] == ["cpu"]
        check_result(doc["results"][0], experts)
        assert doc["recorded"] is False
        if "--time-budget" in strategy:  # the first strategy runs, no later one starts
            assert [s["strategy"] for s in doc["skipped"]] == ["cpu_fp8"]
            assert doc["skipped"][0]["reason"].startswith("time budget spent")
    assert not (tmp_path / "data" / "measurements.json").exists()


def test_wan_bench_names_what_is_wrong(models: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = wan_bench("--tiny", *SMALL, "--strategy", "group_offload", models=models, data=data)
    assert proc.returncode == 2
    assert "group_offload does not run on this device (cpu)" in proc.stderr
    assert "use all, best or one of: cpu, cpu_fp8" in proc.stderr
    proc = wan_bench("--tiny", *SMALL, "--strategy", "warp", "--json", models=models, data=data)
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["error"]["message"] == "no strategy named warp"
    proc = wan_bench("--tiny", "--resolution", "big", models=models, data=data)
    assert proc.returncode == 2 and "WIDTHxHEIGHT" in proc.stderr
    proc = wan_bench("--tiny", "--model", "SDXL", models=models, data=data)
    assert proc.returncode == 2 and "SDXL" in proc.stderr


def test_gpu_acceptance_script_runs_with_tiny_models_and_writes_one_report(
    models: Path, tmp_path: Path
) -> None:
    out = tmp_path / "acceptance"
    env = {
        **os.environ,
        "MODELS_ROOT": str(models),
        "WAN_DATA_DIR": str(tmp_path / "data"),
        "PYTHON": sys.executable,
    }
    for name in ("WAN_DEV_MODE", "WAN_HARDWARE_PROFILE", "WAN_DEVICE"):
        env.pop(name, None)
    script = str(ROOT / "bench" / "gpu_acceptance.sh")
    cases = ["--case", "TI2V-5B:96x64x9:all", "--case", "T2V-A14B:96x64x9:best"]
    proc = subprocess.run(
        [script, "--tiny", *cases, "--steps", "2", "--out", str(out)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "acceptance.json").read_text("utf-8"))
    assert report["schema"] == "wan.bench.report/1" and report["ok"] is True
    runs = report["runs"]
    assert [(r["model"], r["variant"]) for r in runs] == [
        ("ti2v-5B@2.2.0", "tiny"),
        ("t2v-A14B@2.2.0", "tiny"),
    ]
    assert [[x["strategy"] for x in r["results"]] for r in runs] == [["cpu", "cpu_fp8"], ["cpu"]]
    # --decode-once: the first strategy of each run decodes, the others stop at the latents.
    decoded = [[x["measured"]["vae_decode_s"] is not None for x in r["results"]] for r in runs]
    assert decoded == [[True, False], [True]]
    assert sorted(p.name for p in out.iterdir()) == [
        "1-TI2V-5B-96x64x9.json",
        "2-T2V-A14B-96x64x9.json",
        "acceptance.json",
    ]
    assert (
        "ti2v-5B@2.2.0 (tiny: development variant: random weights, output is noise)" in proc.stdout
    )
    assert "2 runs" in proc.stdout and "failed: none" in proc.stdout

    bad = subprocess.run(
        [script, "--tiny", "--case", "TI2V-5B:96x64:all", "--out", str(out)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "MODEL:WIDTHxHEIGHTxFRAMES:STRATEGY" in bad.stderr
