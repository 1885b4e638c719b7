"""Explainer settings: every environment variable of the explainer pipeline is read here, once."""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from wan_desktop.models import env as envvars

ENV_MAX_SCENE_CONCURRENCY = "MAX_SCENE_CONCURRENCY"
ENV_MAX_CONCURRENT_RENDERS = "MAX_CONCURRENT_RENDERS"
ENV_DEFAULT_QUALITY = "DEFAULT_QUALITY"
ENV_USE_GPU_ACCELERATION = "USE_GPU_ACCELERATION"
ENV_USE_RAG = "USE_RAG"
ENV_LLM_BASE_URL = "LLM_BASE_URL"
ENV_LLM_API_KEY = "LLM_API_KEY"
ENV_PLANNER_MODEL = "PLANNER_MODEL"
ENV_SCENE_MODEL = "SCENE_MODEL"
ENV_HELPER_MODEL = "HELPER_MODEL"
ENV_LLM_TIMEOUT = "LLM_TIMEOUT_S"
ENV_MAX_FIX_ATTEMPTS = "MAX_FIX_ATTEMPTS"
ENV_RENDER_TIMEOUT = "RENDER_TIMEOUT_S"
ENV_RENDER_MEMORY = "RENDER_MEMORY_MB"
ENV_SANDBOX = "EXPLAINER_SANDBOX"
ENV_STORAGE_MODE = "STORAGE_MODE"
ENV_CLEANUP = "CLEANUP_TEMP_FILES"
ENV_S3_BUCKET = "OUTPUT_S3_BUCKET"
ENV_S3_PREFIX = "OUTPUT_S3_PREFIX"
ENV_S3_ENDPOINT = "OUTPUT_S3_ENDPOINT_URL"
ENV_S3_REGION = "OUTPUT_S3_REGION"

E = TypeVar("E", bound=enum.StrEnum)

QUALITIES = ("low", "medium", "high", "ultra")
DEFAULT_FIX_ATTEMPTS = 4  # renders per scene: the first try plus three fixes
FIX_ATTEMPTS_RANGE = (1, 5)
DEFAULT_RENDER_TIMEOUT_S = 300.0
DEFAULT_RENDER_MEMORY_MB = 4096  # a 1080p60 scene peaks at ≈ 1.4 GB of address space
DEFAULT_LLM_TIMEOUT_S = 120.0
SECRET_KEPT = "(set where the engine runs)"  # what a server sends for its API key: never the key


class StorageMode(enum.StrEnum):
    local_only = "local_only"
    s3_only = "s3_only"
    local_and_s3 = "local_and_s3"

    @property
    def uses_s3(self) -> bool:
        return self is not StorageMode.local_only


class SandboxMode(enum.StrEnum):
    """How generated code is isolated; ``auto`` picks the strongest that works here."""

    auto = "auto"
    bwrap = "bwrap"  # bubblewrap: no network, read-only filesystem but the scene folder
    unshare = "unshare"  # util-linux unshare: no network; files guarded in-process only
    process = "process"  # a plain child process: in-process guards only (warned)


@dataclass(frozen=True)
class S3Settings:
    bucket: str | None = None
    prefix: str = "explainer"
    endpoint_url: str | None = None  # None = AWS; e.g. http://127.0.0.1:8333 for SeaweedFS/MinIO
    region: str | None = None
    # Credentials come from boto3's usual chain (AWS_ACCESS_KEY_ID…, profiles), never from here.

    @property
    def configured(self) -> bool:
        return bool(self.bucket)


@dataclass(frozen=True)
class LlmSettings:
    base_url: str | None = None  # an OpenAI-compatible endpoint, e.g. http://127.0.0.1:11434/v1
    api_key: str | None = None
    planner_model: str | None = None  # outline and per-scene plans
    scene_model: str | None = None  # Manim code and fixes (default: the planner model)
    helper_model: str | None = None  # retrieval search terms (default: the scene model)
    timeout_s: float = DEFAULT_LLM_TIMEOUT_S

    @property
    def configured(self) -> bool:
        return bool(self.base_url and self.planner_model)

    def models(self, override: str | None = None) -> tuple[str, str, str]:
        """(planner, scene, helper) model names; ``override`` (a job's ``model``) sets all."""
        if override:
            return override, override, override
        planner = self.planner_model or ""
        scene = self.scene_model or planner
        return planner, scene, self.helper_model or scene


@dataclass(frozen=True)
class ExplainerSettings:
    max_scene_concurrency: int = 2  # language-model calls for different scenes at once
    max_concurrent_renders: int = 1  # sandboxed render processes at once
    default_quality: str = "medium"
    use_gpu_acceleration: bool = False  # encode with NVENC when re-encoding, if available
    use_rag: bool = False
    max_fix_attempts: int = DEFAULT_FIX_ATTEMPTS
    render_timeout_s: float = DEFAULT_RENDER_TIMEOUT_S
    render_memory_mb: int = DEFAULT_RENDER_MEMORY_MB
    sandbox: SandboxMode = SandboxMode.auto
    storage_mode: StorageMode = StorageMode.local_only
    cleanup: bool = True  # remove the work folder (and local copies in s3_only) after success
    llm: LlmSettings = LlmSettings()
    s3: S3Settings = S3Settings()
    retry_base_s: float = 1.0  # exponential backoff of recoverable errors: 1 s, 2 s, 4 s…

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> ExplainerSettings:
        env = dict(os.environ if environ is None else environ)
        quality = env.get(ENV_DEFAULT_QUALITY, "").strip().lower() or cls.default_quality
        if quality not in QUALITIES:
            raise ValueError(
                f"{ENV_DEFAULT_QUALITY}={quality!r} is not one of {', '.join(QUALITIES)}"
            )
        settings = cls(
            max_scene_concurrency=envvars.integer(env, ENV_MAX_SCENE_CONCURRENCY, 2, (1, 16)),
            max_concurrent_renders=envvars.integer(env, ENV_MAX_CONCURRENT_RENDERS, 1, (1, 16)),
            default_quality=quality,
            use_gpu_acceleration=envvars.flag(env, ENV_USE_GPU_ACCELERATION),
            use_rag=envvars.flag(env, ENV_USE_RAG),
            max_fix_attempts=envvars.integer(
                env, ENV_MAX_FIX_ATTEMPTS, DEFAULT_FIX_ATTEMPTS, FIX_ATTEMPTS_RANGE
            ),
            render_timeout_s=float(
                envvars.integer(env, ENV_RENDER_TIMEOUT, int(DEFAULT_RENDER_TIMEOUT_S), (5, 7200))
            ),
            render_memory_mb=envvars.integer(
                env, ENV_RENDER_MEMORY, DEFAULT_RENDER_MEMORY_MB, (512, 262144)
            ),
            sandbox=envvars.choice(env, ENV_SANDBOX, SandboxMode, SandboxMode.auto),
            storage_mode=envvars.choice(env, ENV_STORAGE_MODE, StorageMode, StorageMode.local_only),
            cleanup=envvars.flag(env, ENV_CLEANUP, default=True),
            llm=LlmSettings(
                base_url=(env.get(ENV_LLM_BASE_URL) or "").strip().rstrip("/") or None,
                api_key=env.get(ENV_LLM_API_KEY) or None,
                planner_model=env.get(ENV_PLANNER_MODEL) or None,
                scene_model=env.get(ENV_SCENE_MODEL) or None,
                helper_model=env.get(ENV_HELPER_MODEL) or None,
                timeout_s=float(
                    envvars.integer(env, ENV_LLM_TIMEOUT, int(DEFAULT_LLM_TIMEOUT_S), (1, 3600))
                ),
            ),
            s3=S3Settings(
                bucket=env.get(ENV_S3_BUCKET) or None,
                prefix=(env.get(ENV_S3_PREFIX) or "explainer").strip("/"),
                endpoint_url=env.get(ENV_S3_ENDPOINT) or None,
                region=env.get(ENV_S3_REGION) or None,
            ),
        )
        return replace(settings, **overrides) if overrides else settings
