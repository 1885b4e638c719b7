"""The step-caching level from each face: the API's field, the Generate form's choice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api_helpers import api_client
from tests.ui_helpers import make_window, mock_studio, wait_until
from wan_desktop.engine.params import CHOICES
from wan_desktop.ui.panels.generate import GeneratePanel
from wan_desktop.ui.state import Studio
from wan_desktop.ui.window import MainWindow


def test_api_takes_a_cache_level_and_names_the_choices_for_a_bad_one(tmp_path: Path) -> None:
    from wan_desktop.api.submit_request import SCHEMA

    # Declared once, in the engine; the request model is generated from it.
    assert SCHEMA["properties"]["cache"]["enum"] == list(CHOICES["cache"])
    with api_client(tmp_path) as (client, engine):
        body = {"model_type": "T2V-A14B", "prompt": "a fox", "steps": 3}
        r = client.post("/api/v1/generation/submit", json={**body, "cache": "medium"})
        assert r.status_code == 200, r.text
        job = engine.get(r.json()["task_id"])
        assert job.params["cache"] == "medium"
        r = client.post("/api/v1/generation/submit", json=body)
        assert engine.get(r.json()["task_id"]).params["cache"] == "off"
        r = client.post("/api/v1/generation/submit", json={**body, "cache": "turbo"})
        assert r.status_code == 422
        assert {e["loc"][-1] for e in r.json()["errors"]} == {"cache"}
        assert all(level in r.json()["detail"] for level in CHOICES["cache"])


@pytest.fixture
def studio(qtbot: Any, tmp_path: Path) -> Iterator[Studio]:
    with mock_studio(tmp_path, step_s=0.02) as s:
        yield s


@pytest.fixture
def window(qtbot: Any, studio: Studio) -> MainWindow:
    return make_window(qtbot, studio)


def test_the_form_offers_each_level_sends_it_and_restores_it(
    qtbot: Any, window: MainWindow, studio: Studio
) -> None:
    gen = window.pages["generate"]
    assert isinstance(gen, GeneratePanel)
    levels = [gen.cache.itemData(i) for i in range(gen.cache.count())]
    assert levels == list(CHOICES["cache"]) and gen.cache.currentData() == "off"
    gen.select_model("t2v-A14B@2.2.0")
    gen.prompt.setPlainText("a lighthouse in a storm")
    gen.steps.setValue(4)
    gen.frames.setValue(5)
    assert "cache" not in gen.params()  # off: the job is the one it always was
    gen.cache.setCurrentIndex(gen.cache.findData("strong"))
    gen.generate_btn.click()  # sent off the GUI thread: the job shows once the engine took it
    wait_until(qtbot, lambda: len(studio.jobs) == 1)
    (job,) = studio.jobs.values()
    assert job.params["cache"] == "strong"
    gen.cache.setCurrentIndex(0)
    gen.load_params(job.params, navigate=False)  # "use these settings again"
    assert gen.cache.currentData() == "strong"


def test_the_form_offers_the_fast_preset_where_a_pack_exists_and_shows_its_settings(
    qtbot: Any, window: MainWindow, studio: Studio
) -> None:
    gen = window.pages["generate"]
    assert isinstance(gen, GeneratePanel)
    gen.select_model("ti2v-5B@2.2.0")
    fast = gen.preset.findData("fast")
    assert not gen.preset.model().item(fast).isEnabled()  # type: ignore[attr-defined]
    gen.select_model("t2v-A14B@2.2.0")
    assert gen.preset.model().item(fast).isEnabled()  # type: ignore[attr-defined]
    gen.prompt.setPlainText("a lighthouse in a storm")
    gen.frames.setValue(5)
    gen.preset.setCurrentIndex(fast)
    assert (gen.steps.value(), gen.guidance.value(), gen.guidance_2.value()) == (4, 1.0, 1.0)
    assert not gen.steps.isEnabled() and not gen.guidance.isEnabled()
    gen.generate_btn.click()  # sent off the GUI thread: the job shows once the engine took it
    wait_until(qtbot, lambda: len(studio.jobs) == 1)
    (job,) = studio.jobs.values()
    assert job.params["preset"] == "fast" and job.params["steps"] == 4
    gen.select_model("ti2v-5B@2.2.0")  # no pack: back to standard, the fields editable again
    assert gen.preset.currentData() == "none" and gen.steps.isEnabled()
    gen.load_params(job.params, navigate=False)
    assert gen.preset.currentData() == "fast"
