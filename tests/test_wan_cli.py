"""``wan generate``: one video from the command line, exit codes, the progress bar."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT, small_filesystem
from wan_desktop.cli import main
from wan_desktop.engine import JobStage, JobStep, JobWarning
from wan_desktop.engine.cli import (
    EXIT_FAILED,
    EXIT_INVALID,
    _lora,
    _Progress,
    remove_stale_temp_dirs,
)
from wan_desktop.engine.outputs import read_mp4
from wan_desktop.models.manifest import DEV_LABEL

SMALL = ["--steps", "4", "--frames", "9", "--resolution", "96x64"]


def wan(*args: str, models_root: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MODELS_ROOT": str(models_root), "PYTHONPATH": str(ROOT)}
    env.pop("WAN_DEV_MODE", None)
    return subprocess.run(
        [sys.executable, "-m", "wan_desktop.cli", *args],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_generate_in_development_mode_end_to_end(tiny_models_root: Path, tmp_path: Path) -> None:
    pytest.importorskip("diffusers")
    out = Path("videos") / "fox.mp4"  # relative to the working directory, folder created
    proc = wan(
        "--dev",
        "generate",
        "--model",
        "T2V-A14B",
        "--prompt",
        "a red fox running through fresh snow",
        "--seed",
        "42",
        *SMALL,
        "--out",
        str(out),
        "--json",
        models_root=tiny_models_root,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["schema"] == "wan.generate/1" and doc["ok"] is True
    assert doc["development"] is True and doc["label"] == DEV_LABEL and doc["variant"] == "tiny"
    assert (doc["width"], doc["height"], doc["frames"], doc["seed"]) == (96, 64, 9, 42)
    video = tmp_path / out
    assert Path(doc["video"]) == out and read_mp4(video).shape == (9, 64, 96, 3)
    sidecar = json.loads(video.with_suffix(".json").read_text())
    assert sidecar["seed"] == 42 and sidecar["model"]["variant"] == "tiny"
    assert "\r" not in proc.stderr, "no progress bar when stderr is not a terminal"
    assert not list(tmp_path.glob("**/*.sqlite3")), "a private engine: no job database left"


def test_bad_input_exits_2_naming_every_field(tiny_models_root: Path, tmp_path: Path) -> None:
    proc = wan(
        "--dev",
        "generate",
        "--model",
        "T2V-A14B",
        "--prompt",
        "a fox",
        "--frames",
        "10",
        "--steps",
        "0",
        "--lora",
        "style.safetensors:strong",
        "--out",
        "fox.gif",
        models_root=tiny_models_root,
        cwd=tmp_path,
    )
    assert proc.returncode == EXIT_INVALID
    assert proc.stderr.startswith("error [invalid_input]")
    for name in ("frames", "steps", "lora[0]", "out"):
        assert f"  {name}: " in proc.stderr, proc.stderr
    assert "4k+1" in proc.stderr and proc.stdout == ""


def test_failures_and_refusals_in_process(
    tiny_models_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("diffusers")
    monkeypatch.setenv("MODELS_ROOT", str(tiny_models_root))
    monkeypatch.setenv("WAN_DEV_MODE", "1")
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    out = str(tmp_path / "x.mp4")
    base = ["generate", "--prompt", "a fox", *SMALL, "--out", out]

    assert main([*base, "--model", "I2V-A14B"]) == EXIT_INVALID
    assert "image: I2V-A14B turns an image into a video" in capsys.readouterr().err
    assert main([*base, "--model", "T2V-A14B", "--image", str(bad)]) == EXIT_INVALID
    assert "remove the image" in capsys.readouterr().err

    code = main([*base, "--model", "I2V-A14B", "--image", str(bad), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == EXIT_INVALID and doc["ok"] is False
    assert (
        doc["error"]["category"] == "invalid_input"
        and "could not be read" in doc["error"]["message"]
    )
    assert not Path(out).exists()


def _png(path: Path, size: tuple[int, int]) -> Path:
    from PIL import Image

    Image.new("RGB", size, (10, 200, 30)).save(path)
    return path


def test_each_bad_image_size_and_output_place_is_named_before_anything_runs(
    tiny_models_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MODELS_ROOT", str(tiny_models_root))
    monkeypatch.setenv("WAN_DEV_MODE", "1")
    good = _png(tmp_path / "good.png", (96, 64))
    tiny = _png(tmp_path / "tiny.png", (1, 1))
    missing = tmp_path / "missing.png"
    out = str(tmp_path / "x.mp4")
    base = ["generate", "--prompt", "a fox", *SMALL, "--out", out]

    def refused(*args: str) -> str:
        code = main([*base, *args])
        err = capsys.readouterr().err
        assert code == EXIT_INVALID, err
        return err

    for args, field in (
        (("--model", "I2V-A14B", "--image", str(missing)), "image"),
        (("--model", "TI2V-5B", "--image", str(missing)), "image"),
        (("--model", "I2V-A14B", "--image", str(good), "--end-image", str(missing)), "end_image"),
    ):
        err = refused(*args)
        assert f"{field}: file {missing} does not exist" in err, err
        assert "add an image" not in err
    err = refused("--model", "I2V-A14B", "--image", str(tmp_path))
    assert f"image: {tmp_path} is a folder" in err
    err = refused("--model", "I2V-A14B", "--image", str(good), "--end-image", str(tmp_path))
    assert f"end_image: {tmp_path} is a folder" in err
    err = refused("--model", "I2V-A14B", "--image", str(tiny))
    assert "is 1x1 pixels; use an image at least 32x32" in err
    err = refused("--model", "I2V-A14B", "--image", str(good), "--end-image", str(tiny))
    assert "end_image:" in err and "is 1x1 pixels" in err
    err = refused("--model", "T2V-A14B", "--resolution", "100000x100000")
    assert "100000x100000 is outside the limit: each side must be 64–4096 pixels" in err
    assert "not WIDTHxHEIGHT" in refused("--model", "T2V-A14B", "--resolution", "big")
    # Places the video could never be written to.
    a_file = tmp_path / "a-file.txt"
    a_file.write_text("x")
    for place, why in (
        ("/proc/x.mp4", "cannot write to /proc"),
        (str(a_file / "x.mp4"), f"{a_file} is a file, not a folder"),
        (str(a_file / "sub" / "x.mp4"), f"{a_file} is a file, not a folder"),
    ):
        code = main(["generate", "--prompt", "a fox", "--model", "T2V-A14B", "--out", place])
        err = capsys.readouterr().err
        assert code == EXIT_INVALID and f"out: {why}" in err, err
    assert not list(tmp_path.glob("**/*.mp4"))


def test_a_video_that_cannot_be_written_to_out_is_kept_in_the_outputs_folder(
    tiny_models_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("diffusers")
    monkeypatch.setenv("MODELS_ROOT", str(tiny_models_root))
    monkeypatch.setenv("WAN_DEV_MODE", "1")
    outputs = tmp_path / "outputs"
    monkeypatch.setenv("WAN_OUTPUTS_DIR", str(outputs))
    # The place passes the check before the run (an empty file fits); the final write then
    # fails: a real filesystem of one 4 KiB page, already full.
    with small_filesystem(tmp_path / "videos", "4k") as target:
        filler = target / "filler"
        filler.write_bytes(b"x" * 4096)
        out = str(target / "fox.mp4")
        code = main(
            ["generate", "--model", "T2V-A14B", "--prompt", "a fox", *SMALL, "--out", out, "--json"]
        )
        doc = json.loads(capsys.readouterr().out)
        assert not (target / "fox.mp4").exists()
        assert list(target.iterdir()) == [filler], "no partial file left behind"
    assert code == EXIT_FAILED and doc["error"]["category"] == "storage_failed"
    (kept,) = outputs.glob("*.mp4")
    assert f"it is kept at {kept}" in doc["error"]["message"]
    assert read_mp4(kept).shape == (9, 64, 96, 3)
    assert kept.with_suffix(".json").exists()


def test_stale_temp_folders_of_killed_runs_are_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        folders = {
            name: tmp_path / name
            for name in (
                f"wan-generate-{dead.pid}-abc",
                f"wan-generate-{alive.pid}-def",
                f"wan-generate-{os.getpid()}-ghi",
                "wan-generate-oldstyle",
                "wan-generate-newstyle",
            )
        }
        for folder in folders.values():
            (folder / "outputs").mkdir(parents=True)
            (folder / "outputs" / "v.mp4").write_bytes(b"x" * 1000)
        old = folders["wan-generate-oldstyle"]
        os.utime(old, (0, 0))
        (tmp_path / "wan-generate-file").write_text("not a folder")
        removed = remove_stale_temp_dirs(tmp_path)
        assert set(removed) == {folders[f"wan-generate-{dead.pid}-abc"], old}
        left = {p.name for p in tmp_path.iterdir()}
        assert left == {
            f"wan-generate-{alive.pid}-def",
            f"wan-generate-{os.getpid()}-ghi",
            "wan-generate-newstyle",
            "wan-generate-file",
        }
    finally:
        alive.kill()
        alive.wait()


def test_a_killed_run_leaves_a_folder_that_the_next_run_removes(
    tiny_models_root: Path, tmp_path: Path
) -> None:
    import signal
    import time

    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "MODELS_ROOT": str(tiny_models_root), "PYTHONPATH": str(ROOT)}
    env["TMPDIR"] = str(temp)
    args = ["--dev", "generate", "--model", "T2V-A14B", "--prompt", "a fox", *SMALL]
    proc = subprocess.Popen(
        [sys.executable, "-m", "wan_desktop.cli", *args, "--out", str(tmp_path / "fox.mp4")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not list(temp.glob(f"wan-generate-{proc.pid}-*")):
            assert proc.poll() is None and time.monotonic() < deadline, "no temporary folder"
            time.sleep(0.05)
        assert remove_stale_temp_dirs(temp) == []  # still running: kept
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    (left,) = temp.glob(f"wan-generate-{proc.pid}-*")
    assert remove_stale_temp_dirs(temp) == [left] and not left.exists()


def test_lora_arguments() -> None:
    assert _lora("style.safetensors") == {"path": "style.safetensors"}
    assert _lora("style.safetensors:0.8") == {"path": "style.safetensors", "strength": 0.8}
    assert _lora("s.safetensors:1:0") == {
        "path": "s.safetensors",
        "strength": 1.0,
        "strength_2": 0.0,
    }
    assert _lora(r"C:\loras\s.safetensors:0.5")["path"] == r"C:\loras\s.safetensors"
    with pytest.raises(ValueError, match="must be a number"):
        _lora("s.safetensors:strong")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_shows_stages_steps_and_eta() -> None:
    stream = _Tty()
    bar = _Progress(stream)
    job = "a" * 32

    def step(i: int, eta: float | None, expert: str) -> Any:
        return JobStep(
            job_id=job,
            step=i,
            total_steps=4,
            progress=i / 4,
            eta_s=eta,
            step_time_s=0.5,
            expert=expert,
        )

    bar.on_event(JobStage(job_id=job, stage="loading_model", progress=0.05, message="cpu"), job)
    bar.on_event(step(1, None, "high_noise"), job)
    bar.on_event(step(2, 75.0, "high_noise"), job)
    bar.on_event(step(3, 0.5, "low_noise"), job)
    bar.on_event(JobWarning(job_id=job, message="LoRA x was skipped"), job)
    bar.on_event(JobStage(job_id="b" * 32, stage="saving", progress=0.9), job)  # another job
    bar.finish()
    text = stream.getvalue()
    assert text.startswith("loading model: cpu\n")
    assert "step 1/4" in text and "ETA" not in text.split("step 2/4")[0]
    assert "step 2/4 0.50 s/step high-noise ETA 1:15" in text
    assert "low-noise ETA 0:00" in text
    assert "\nwarning: LoRA x was skipped\n" in text and "saving" not in text
