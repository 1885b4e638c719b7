"""One job on several GPUs, outside the pool: the degrees that are offered, the refusal of a
server that runs each job on one GPU, and the per-GPU memory plan (Ulysses keeps a full copy of
the weights on every GPU and splits the activations). The pool's own tests are in test_pool.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api_helpers import api_client
from tests.helpers import REAL_MANIFEST
from wan_desktop.engine import InvalidInputError
from wan_desktop.engine.params import validate_wan_params
from wan_desktop.models import load_manifest

MANIFEST = load_manifest(REAL_MANIFEST)


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
