"""The one path resolver and the rules a model file path must follow on every platform."""

from __future__ import annotations

from pathlib import Path

import pytest

from wan_desktop.models.errors import PathInvalidError
from wan_desktop.models.paths import (
    ModelPaths,
    check_no_case_collisions,
    check_relative_path,
    model_dir_name,
    safe_join,
    storage_error,
    windows_path_guidance,
)


def test_model_folder_layout(tmp_path: Path) -> None:
    paths = ModelPaths(tmp_path)
    assert (
        paths.model_dir("t2v-A14B@2.2.0", "bf16", "bf16") == tmp_path / "wan22" / "t2v-A14B@2.2.0"
    )
    assert paths.model_dir("t2v-A14B@2.2.0", "tiny", "bf16") == (
        tmp_path / "wan22" / "t2v-A14B@2.2.0+tiny"
    )
    assert model_dir_name("x@1.0.0", "fp8", "bf16") == "x@1.0.0+fp8"
    assert paths.lock_file("x@1.0.0").parent == tmp_path / ".locks"
    assert paths.staging_dir("x@1.0.0").parent == tmp_path / ".staging"


@pytest.mark.parametrize(
    "good",
    [
        "model_index.json",
        "transformer/diffusion_pytorch_model-00001-of-00006.safetensors",
        "a/b/c.d.e",
        "console/weights.bin",
        "CONFIG.json",
        "nul_points.txt",
    ],
)
def test_valid_paths(good: str) -> None:
    assert check_relative_path(good).as_posix() == good


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("", "empty"),
        ("/abs/file", "absolute"),
        ("C:/x", "absolute"),
        ("c:x", "absolute"),
        ("a/../../b", ".."),
        ("..", ".."),
        ("a//b", "empty"),
        ("./a", "'.'"),
        ("a\\b", "backslash"),
        ("CON", "reserved"),
        ("vae/aux.json", "reserved"),
        ("Lpt9.bin", "reserved"),
        ("COM¹", "reserved"),
        ("dir./x", "space or dot"),
        ("x ", "space or dot"),
        ("a?b", "Windows"),
        ("tab\tname", "Windows"),
    ],
)
def test_invalid_paths(bad: str, why: str) -> None:
    with pytest.raises(PathInvalidError) as err:
        check_relative_path(bad)
    assert why in err.value.message
    assert err.value.fix


def test_case_collisions_and_duplicates() -> None:
    check_no_case_collisions(["a/x", "a/y", "b/x"])
    with pytest.raises(PathInvalidError, match="differ only in case"):
        check_no_case_collisions(["Vae/x", "vae/x"])
    with pytest.raises(PathInvalidError, match="twice"):
        check_no_case_collisions(["vae/x", "vae/x"])


def test_safe_join_refuses_symlink_escape(tmp_path: Path) -> None:
    base = tmp_path / "model"
    base.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (base / "link").symlink_to(outside)
    assert safe_join(base, "vae/config.json") == base / "vae" / "config.json"
    with pytest.raises(PathInvalidError, match="outside"):
        safe_join(base, "link/secret")


def test_windows_long_path_guidance() -> None:
    long_root = Path("C:/Users/someone/AppData/Local/WanDesktop/wan-desktop/models/wan22")
    deep = "t2v-A14B@2.2.0/transformer_2/" + "x" * 200 + ".safetensors"
    advice = windows_path_guidance(long_root, deep, platform="win32")
    assert advice is not None and "LongPathsEnabled" in advice and "shorter" in advice
    assert windows_path_guidance(long_root, "t2v/model_index.json", platform="win32") is None
    assert windows_path_guidance(long_root, deep, platform="linux") is None


def test_path_guidance_per_platform(tmp_path: Path) -> None:
    from wan_desktop.models.paths import path_guidance

    long_root = Path("C:/Users/someone/AppData/Local/WanDesktop/wan-desktop/" + "x" * 150)
    rels = ["transformer/diffusion_pytorch_model-00001-of-00012.safetensors"]
    win = path_guidance(long_root, rels, platform="win32")
    assert len(win) == 1 and "LongPathsEnabled" in win[0] and "C:\\wan-models" in win[0]
    assert path_guidance(long_root, rels, platform="linux") == []
    assert path_guidance(long_root, rels, platform="darwin") == []
    too_long_name = ["vae/" + "n" * 256 + ".bin"]
    for platform in ("linux", "darwin", "win32"):
        problems = path_guidance(Path("/m"), too_long_name, platform=platform)
        assert any("longer than 255 bytes" in p for p in problems), platform
    unc = path_guidance(Path("\\\\nas\\models"), rels, platform="win32")
    assert any("network share" in p for p in unc)


@pytest.mark.parametrize("name", ["nul.safetensors", "vae/COM1.json", "LPT9", "aux.txt", "con"])
def test_windows_reserved_names_are_refused_on_every_platform(name: str) -> None:
    with pytest.raises(PathInvalidError) as err:
        check_relative_path(name)
    assert "reserved" in err.value.message and "rename" in (err.value.fix or "")


def test_a_storage_error_outside_the_models_folder_blames_only_that_path(tmp_path: Path) -> None:
    mirror_file = tmp_path / "mirror"
    mirror_file.write_text("a file where a mirror folder was expected")
    with pytest.raises(OSError) as raised:
        (mirror_file / "model_index.json").open("rb")
    err = storage_error(raised.value, tmp_path / "models")
    assert isinstance(err, PathInvalidError)
    assert str(mirror_file / "model_index.json") in err.message
    assert "models folder" not in err.message and "MODELS_ROOT" not in (err.fix or "")
