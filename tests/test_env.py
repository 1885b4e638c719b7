"""One parser of environment variables (models/env.py): every layer reads a value the same way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli_models import wan
from wan_desktop.engine.settings import EngineSettings
from wan_desktop.explainer.settings import ExplainerSettings, SandboxMode
from wan_desktop.models import env as envvars
from wan_desktop.models.config import OrchestratorConfig


@pytest.mark.parametrize("raw", ["1", "true", "YES", " on "])
def test_yes_values(raw: str) -> None:
    assert envvars.flag({"X": raw}, "X") is True


@pytest.mark.parametrize("raw", ["0", "false", "No", "OFF"])
def test_no_values(raw: str) -> None:
    assert envvars.flag({"X": raw}, "X", default=True) is False


@pytest.mark.parametrize("raw", ["2", "maybe", "y"])
def test_anything_else_is_an_error_naming_the_variable(raw: str) -> None:
    with pytest.raises(envvars.SettingError, match=r"X=.*not a yes/no value; use 1 or 0") as err:
        envvars.flag({"X": raw}, "X")
    assert err.value.name == "X"
    assert envvars.flag({"X": "  "}, "X", default=True) is True, "blank is unset"


def test_numbers_ranges_and_choices() -> None:
    assert envvars.number({"N": "2.5"}, "N", 1.0) == 2.5
    assert envvars.integer({}, "N", 7) == 7
    for bad, match in (("abc", "not a number"), ("inf", "not a finite number")):
        with pytest.raises(envvars.SettingError, match=match):
            envvars.number({"N": bad}, "N", 1.0)
    with pytest.raises(envvars.SettingError, match="out of range; use 1–16"):
        envvars.integer({"N": "99"}, "N", 1, (1, 16))
    assert envvars.choice({"S": "BWRAP"}, "S", SandboxMode, SandboxMode.auto) is SandboxMode.bwrap
    with pytest.raises(envvars.SettingError, match="not one of"):
        envvars.choice({"S": "chroot"}, "S", SandboxMode, SandboxMode.auto)


def test_every_layer_reads_a_flag_the_same_way(tmp_path: Path) -> None:
    """WAN_MOCK=2 used to read as "off" in the engine while the explainer refused its flags."""
    base = {"WAN_CONFIG_DIR": str(tmp_path), "WAN_DATA_DIR": str(tmp_path)}
    for reader, name in (
        (EngineSettings.from_env, "WAN_MOCK"),
        (EngineSettings.from_env, "WAN_RETRY_INTERRUPTED"),
        (OrchestratorConfig.from_env, "WAN_DEV_MODE"),
        (ExplainerSettings.from_env, "CLEANUP_TEMP_FILES"),
    ):
        assert reader({**base, name: "on"}) is not None
        with pytest.raises(envvars.SettingError, match=name):
            reader({**base, name: "2"})


def test_a_bad_variable_is_a_coded_error_not_a_traceback(tmp_path: Path) -> None:
    env = {"MODELS_ROOT": str(tmp_path / "m"), "WAN_DATA_DIR": str(tmp_path), "WAN_MOCK": "2"}
    out = wan(
        *("--dev", "generate", "--model", "T2V-A14B", "--prompt", "x", "--json"),
        *("--out", str(tmp_path / "a.mp4")),
        env=env,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    doc = json.loads(out.stdout)
    assert doc["error"]["code"] == "INVALID_SETTING"
    assert "WAN_MOCK" in doc["error"]["message"] and "WAN_MOCK" in doc["error"]["fix"]
    served = wan("serve", "--port", "0", env=env)
    assert served.returncode == 2 and "WAN_MOCK='2'" in served.stderr
    assert "Traceback" not in served.stderr
