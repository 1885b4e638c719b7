"""``wan explain``: one video from the command line, with progress and a JSON answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wan_desktop.cli import build_parser, main

NO_GPU = json.dumps(
    {"device": "cpu", "gpu_name": None, "vram_total_mb": 0, "ram_total_mb": 8192, "cpu_count": 2}
)


@pytest.fixture(autouse=True)
def _quick_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    # The engine's memory sampler would read the real hardware (importing torch); not needed.
    monkeypatch.setenv("WAN_HARDWARE_PROFILE", NO_GPU)
    monkeypatch.setenv("MAX_CONCURRENT_RENDERS", "2")


def test_explain_is_a_wan_command() -> None:
    text = build_parser().format_help()
    assert "explain" in text and "explainer video" in text


@pytest.mark.slow
def test_explain_makes_the_video_and_its_files_next_to_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "videos" / "sun.mp4"
    code = main(
        [
            "explain",
            "Why the sky is blue",
            "--context",
            "Sunlight scatters off air molecules. Blue light scatters the most.",
            "--quality",
            "low",
            "--scenes",
            "3",
            "--out",
            str(out),
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    doc = json.loads(captured.out)
    assert doc["schema"] == "wan.explain/1" and doc["ok"]
    assert doc["files"] == {
        "video": str(out),
        "subtitles": str(out.with_suffix(".srt")),
        "thumbnail": str(out.with_suffix(".jpg")),
        "metadata": str(out.with_suffix(".json")),
    }
    assert all(Path(p).is_file() for p in doc["files"].values())
    assert doc["width"] == 854 and doc["duration_s"] > 5
    assert doc["label"] == "offline template planner (no language model configured)"
    assert doc["stages_completed"][-1] == "storage"
    lines = captured.err.splitlines()
    assert lines[0] == "offline template planner (no language model configured)"
    assert "[  5%] initializing: offline templates; low quality" in lines[1]
    stages = [line.split("]")[1].split(":")[0].strip() for line in lines if line.startswith("[")]
    assert stages == [
        "initializing",
        "planning",
        "scenario_creation",
        "code_generation",
        "rendering",
        "combining",
        "storage",
        "completed",
    ]


def test_bad_options_exit_2_naming_each_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["explain", "T", "--context", "C", "--scenes", "9", "--json"])
    captured = capsys.readouterr()
    assert code == 2
    doc = json.loads(captured.out)
    assert doc["schema"] == "wan.error/1" and doc["error"]["code"] == "INVALID_INPUT"
    assert "scene_count" in doc["error"]["details"]
    assert "error [INVALID_INPUT]: scene_count: is 9" in captured.err
    assert main(["explain", "T", "--context", "C", "--out", str(tmp_path / "x.mov")]) == 2
    assert "must end in .mp4" in capsys.readouterr().err


def test_the_context_can_come_from_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.txt"
    assert main(["explain", "T", "--context-file", str(missing)]) == 2
    assert "cannot read the context" in capsys.readouterr().err
