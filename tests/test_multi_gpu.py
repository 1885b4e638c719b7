"""One job on several GPUs, outside the pool: the degrees that are offered, the refusal of a
server that runs each job on one GPU, and the per-GPU memory plan (Ulysses keeps a full copy of
the weights on every GPU and splits the activations). The pool's own tests are in test_pool.py.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.api_helpers import api_client
from tests.helpers import REAL_MANIFEST
from wan_desktop.engine import InvalidInputError
from wan_desktop.engine.hardware import simulated_profile
from wan_desktop.engine.model_facts import facts_from_manifest
from wan_desktop.engine.params import round_size, validate_wan_params
from wan_desktop.engine.planner import JobShape, activations_gb, plan, weights_gb
from wan_desktop.models import load_manifest
from wan_desktop.models.manifest import parse_resolution

MANIFEST = load_manifest(REAL_MANIFEST)
H100 = simulated_profile(80, 256, name="H100", compute_capability=(9, 0))
RTX_4090 = simulated_profile(24, 64, name="RTX 4090", compute_capability=(8, 9))


def refusal(dev_mode: bool, **raw: object) -> str:
    with pytest.raises(InvalidInputError) as err:
        validate_wan_params({"prompt": "a fox", **raw}, MANIFEST, dev_mode=dev_mode)
    return err.value.errors["gpus"]


def test_only_degrees_that_divide_the_heads_and_the_tokens_are_accepted() -> None:
    # A14B: 40 heads; 832x480x81 is 21 x 30 x 52 = 32760 tokens: 1, 2, 4, 5, 8 split both.
    said = refusal(False, model="T2V-A14B", resolution="832x480", frames=81, gpus=3)
    assert "40 attention heads, 32760 video tokens" in said
    assert said.endswith("use one of 1, 2, 4, 5, 8")
    ok = validate_wan_params(
        {"prompt": "a fox", "model": "T2V-A14B", "resolution": "832x480", "frames": 81, "gpus": 8},
        MANIFEST,
    )
    assert ok.gpus == 8
    # TI2V-5B: 24 heads, 31 x 22 x 40 = 27280 tokens: 5 divides the tokens, not the heads;
    # 3 and 6 the heads, not the tokens.
    said = refusal(False, model="TI2V-5B", resolution="1280x704", frames=121, gpus=5)
    assert "24 attention heads, 27280 video tokens" in said
    assert said.endswith("use one of 1, 2, 4, 8")
    # Development mode runs the tiny variant, which has 2 heads of its own: 4 cannot split them
    # even where the real model's 40 could.
    said = refusal(True, model="T2V-A14B", resolution="96x64", frames=9, gpus=4)
    assert "2 attention heads" in said and said.endswith("use one of 1, 2")


def test_a_server_without_a_pool_refuses_a_multi_gpu_job_with_a_4xx(tmp_path: Path) -> None:
    with api_client(tmp_path) as (client, engine):
        assert engine.gpus_per_machine() == 1
        r = client.post(
            "/api/v1/generation/submit",
            json={"model_type": "T2V-A14B", "prompt": "a kite", "resolution": "854x480", "gpus": 2},
        )
        assert r.status_code == 422, r.text
        assert "wan serve --pool" in r.text and "or use gpus 1" in r.text
        assert engine.store.count() == 0, "nothing was queued"
        r = client.post(
            "/api/v1/generation/submit",
            json={"model_type": "T2V-A14B", "prompt": "a kite", "resolution": "854x480", "gpus": 1},
        )
        assert r.status_code == 200, r.text


def shape(model: str, resolution: str, frames: int, gpus: int = 1) -> JobShape:
    spec = MANIFEST.get(model)
    w, h = round_size(*parse_resolution(resolution), spec)
    return JobShape(w, h, frames, spec.defaults.steps, gpus=gpus)


def test_a_split_job_keeps_full_weights_and_an_nth_of_the_activations_on_each_gpu() -> None:
    facts = facts_from_manifest(MANIFEST.get("T2V-A14B"))
    one = shape("T2V-A14B", "1280x720", 81)
    for n in (2, 4, 8):
        split = replace(one, gpus=n)
        assert activations_gb(facts, "bfloat16", split) == pytest.approx(
            activations_gb(facts, "bfloat16", one) / n, rel=1e-3
        )
    weights = sum(weights_gb(facts, "bfloat16").values())

    # On an H100 the whole A14B model and one GPU's activations do not fit: one expert at a
    # time. Split in two, every GPU holds all the weights and half the activations: it fits.
    alone = plan(facts, "bfloat16", one, H100)
    two = plan(facts, "bfloat16", replace(one, gpus=2), H100)
    assert alone.strategy == "model_offload" and two.strategy == "gpu" and two.fits
    assert two.vram_gb > weights, "a full copy of the weights on every GPU"
    by = {(c.strategy, c.vae_tiling): c for c in alone.candidates}
    for c in two.candidates:  # never more per GPU than one GPU alone
        assert c.vram_gb <= by[(c.strategy, c.vae_tiling)].vram_gb, c
    assert two.minutes < alone.minutes
    assert two.gpus == 2 and alone.gpus == 1
    assert two.estimate()["gpus"] == 2 and two.to_dict()["gpus"] == 2
    assert "per GPU, on each of 2 GPUs" in two.summary
    assert "per GPU" not in alone.summary


def test_the_ranks_of_a_split_job_share_one_machines_ram() -> None:
    facts = facts_from_manifest(MANIFEST.get("T2V-A14B"))
    one = shape("T2V-A14B", "1280x720", 81)
    alone = plan(facts, "bfloat16", one, RTX_4090)
    assert alone.fits and alone.ram_gb * 2 > alone.ram_budget_gb
    two = plan(facts, "bfloat16", replace(one, gpus=2), RTX_4090)
    assert not two.fits, "two processes holding 40 GiB each do not fit 54 GiB of RAM"
    assert "RAM is the limit" in two.notes[-1]


def test_wan_generate_splits_a_job_across_gpus_into_the_video_of_one(
    tiny_models_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("ray", reason="the pool extra (ray) is installed by setup.sh --dev")
    pytest.importorskip("diffusers")
    import numpy as np
    import torch

    from wan_desktop.cli import main
    from wan_desktop.engine.cli import EXIT_INVALID, EXIT_OK
    from wan_desktop.engine.outputs import read_mp4

    monkeypatch.setenv("MODELS_ROOT", str(tiny_models_root))
    monkeypatch.setenv("WAN_DEV_MODE", "1")
    job = ["--model", "T2V-A14B", "--prompt", "a kite over the dunes", "--seed", "7"]
    base = ["generate", *job, "--steps", "4", "--frames", "9", "--resolution", "96x64", "--json"]

    # Refused before a pool starts: not a count, and a count the tiny variant that runs (2
    # attention heads) cannot be split by.
    assert main([*base, "--gpus", "two", "--out", str(tmp_path / "x.mp4")]) == EXIT_INVALID
    doc = json.loads(capsys.readouterr().out)
    assert doc["error"]["fields"]["gpus"] == "must be a whole number between 1 and 8"
    assert main([*base, "--gpus", "4", "--out", str(tmp_path / "x.mp4")]) == EXIT_INVALID
    doc = json.loads(capsys.readouterr().out)
    assert doc["error"]["fields"]["gpus"].endswith("use one of 1, 2")
    assert not (tmp_path / "x.mp4").exists()

    # Two ranks on this CPU machine (gloo), on a private local Ray instance.
    code = main([*base, "--gpus", "2", "--out", str(tmp_path / "two.mp4")])
    doc = json.loads(capsys.readouterr().out)
    assert code == EXIT_OK, doc
    side = json.loads((tmp_path / "two.json").read_text("utf-8"))
    assert side["params"]["gpus"] == 2

    # The same job on one GPU, with the torch threads each of the two workers had.
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))
    try:
        assert main([*base, "--out", str(tmp_path / "one.mp4")]) == EXIT_OK
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()
    assert np.array_equal(read_mp4(tmp_path / "two.mp4"), read_mp4(tmp_path / "one.mp4"))


def test_the_generate_form_offers_no_gpu_choice_where_a_job_runs_on_one(
    qtbot: Any, tmp_path: Path
) -> None:
    from tests.ui_helpers import mock_studio
    from wan_desktop.ui.panels.generate import GeneratePanel

    with mock_studio(tmp_path) as studio:
        gen = GeneratePanel(studio)
        qtbot.addWidget(gen)
        assert gen.gpus_field.isHidden() and gen.gpus.count() == 1
        gen.prompt.setPlainText("a kite over the dunes")
        assert "gpus" not in gen.params()
        job = gen.submit()
        assert job is not None and job.params["gpus"] == 1
