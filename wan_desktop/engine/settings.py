"""Engine settings: where data lives and how the queue behaves; every engine env var is here."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from wan_desktop.models import env as envvars
from wan_desktop.models.config import APP_AUTHOR, APP_NAME, OrchestratorConfig

ENV_DATA_DIR = "WAN_DATA_DIR"
ENV_OUTPUTS_DIR = "WAN_OUTPUTS_DIR"
ENV_MOCK = "WAN_MOCK"
ENV_IDLE_UNLOAD = "WAN_IDLE_UNLOAD_S"
ENV_RETRY_INTERRUPTED = "WAN_RETRY_INTERRUPTED"
ENV_PREVIEW_EVERY = "WAN_PREVIEW_EVERY"
ENV_DEVICE = "WAN_DEVICE"
ENV_ATTENTION_BACKEND = "WAN_ATTENTION_BACKEND"
ENV_COMPILE = "WAN_COMPILE"

DEFAULT_IDLE_UNLOAD_S = 600.0
DEFAULT_MEMORY_SAMPLE_S = 0.5
# diffusers' attention backends that run from installed packages ("auto": the fastest one installed
# for the device). The "*_hub" ones download kernels at run time and are not offered.
ATTENTION_AUTO = "auto"
ATTENTION_BACKENDS = (
    ATTENTION_AUTO,
    "native",
    "_native_cudnn",
    "_native_flash",
    "_native_efficient",
    "_native_math",
    "flash",
    "flash_varlen",
    "_flash_3",
    "_flash_varlen_3",
    "sage",
    "sage_varlen",
    "xformers",
    "flex",
)


def default_data_dir() -> Path:
    from platformdirs import user_data_path

    return user_data_path(APP_NAME, APP_AUTHOR)


@dataclass(frozen=True)
class EngineSettings:
    data_dir: Path
    outputs_dir: Path
    models: OrchestratorConfig
    mock: bool = False  # generation jobs run the mock pipeline (no model, labelled mock)
    idle_unload_s: float = DEFAULT_IDLE_UNLOAD_S
    retry_interrupted: bool = False  # re-queue jobs that a crash interrupted
    preview_every: int = 0  # a preview every N steps; 0 = off
    memory_sample_s: float = DEFAULT_MEMORY_SAMPLE_S
    device: str | None = None  # "cuda", "cuda:1", "cpu"; None = best available
    attention_backend: str = ATTENTION_AUTO  # one of ATTENTION_BACKENDS
    compile_blocks: bool = False  # torch.compile each transformer block once per loaded model
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.attention_backend not in ATTENTION_BACKENDS:
            raise envvars.SettingError(
                ENV_ATTENTION_BACKEND,
                f"{self.attention_backend!r} is not an attention backend; use one of "
                f"{', '.join(ATTENTION_BACKENDS)}",
            )

    @property
    def db_path(self) -> Path:
        return self.data_dir / "jobs.sqlite3"

    @property
    def db_backups_dir(self) -> Path:
        return self.data_dir / "backups"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def loras_dir(self) -> Path:
        return self.data_dir / "loras"

    @property
    def dev_mode(self) -> bool:
        return self.models.dev_mode

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> EngineSettings:
        env = dict(os.environ if environ is None else environ)
        data = Path(env[ENV_DATA_DIR]).expanduser() if env.get(ENV_DATA_DIR) else default_data_dir()
        outputs = env.get(ENV_OUTPUTS_DIR)
        settings = cls(
            data_dir=data,
            outputs_dir=Path(outputs).expanduser() if outputs else data / "outputs",
            models=OrchestratorConfig.from_env(env),
            mock=envvars.flag(env, ENV_MOCK),
            idle_unload_s=envvars.number(env, ENV_IDLE_UNLOAD, DEFAULT_IDLE_UNLOAD_S, (0, 1e9)),
            retry_interrupted=envvars.flag(env, ENV_RETRY_INTERRUPTED),
            preview_every=envvars.integer(env, ENV_PREVIEW_EVERY, 0, (0, 10_000)),
            device=envvars.text(env, ENV_DEVICE),
            attention_backend=(envvars.text(env, ENV_ATTENTION_BACKEND) or ATTENTION_AUTO).lower(),
            compile_blocks=envvars.flag(env, ENV_COMPILE),
        )
        return replace(settings, **overrides) if overrides else settings
