"""Orchestrator configuration: every environment variable of ``models/`` is read here, once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

from . import env as envvars
from .settings import SETTINGS_FILE, Settings, load_settings, parse_size

APP_NAME = "wan-desktop"
APP_AUTHOR = "WanDesktop"

ENV_MODELS_ROOT = "MODELS_ROOT"
ENV_MANIFEST = "WAN_MODELS_MANIFEST"
ENV_DEV_MODE = "WAN_DEV_MODE"
ENV_LOCAL_MIRROR = "WAN_LOCAL_MIRROR"
ENV_LOCK_TIMEOUT = "WAN_LOCK_TIMEOUT"
ENV_MAX_CONCURRENT_DOWNLOADS = "WAN_MAX_CONCURRENT_DOWNLOADS"
ENV_FREE_SPACE_RESERVE = "WAN_FREE_SPACE_RESERVE_MB"
ENV_CONFIG_DIR = "WAN_CONFIG_DIR"
ENV_QUOTA = "WAN_QUOTA"
ENV_MANIFEST_PUBLIC_KEY = "WAN_MANIFEST_PUBLIC_KEY"
ENV_PARTS_PER_FILE = "WAN_PARTS_PER_FILE"
ENV_PART_SIZE = "WAN_PART_SIZE"
ENV_STALL_TIMEOUT = "WAN_STALL_TIMEOUT"
# Hugging Face: the same names huggingface_hub reads.
ENV_HF_ENDPOINT = "HF_ENDPOINT"
ENV_HF_TOKEN = "HF_TOKEN"
ENV_HF_OFFLINE = "HF_HUB_OFFLINE"
# S3: the AWS SDK's names, read here and handed to boto3 explicitly.
ENV_AWS_ENDPOINT_URL = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
ENV_AWS_REGION = ("AWS_REGION", "AWS_DEFAULT_REGION")
ENV_AWS_PROFILE = "AWS_PROFILE"
ENV_AWS_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
ENV_AWS_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"
ENV_AWS_SESSION_TOKEN = "AWS_SESSION_TOKEN"

# Hours, not seconds: the lock holder may be downloading 60 GB.
DEFAULT_LOCK_TIMEOUT_S = 6 * 3600.0
DEFAULT_MAX_CONCURRENT_DOWNLOADS = 4
# Keep this much free after a download so the OS and the app keep working.
DEFAULT_FREE_SPACE_RESERVE_BYTES = 512 * 1024 * 1024
# Large files travel as parallel ranged requests: PARTS_PER_FILE at a time, PART_SIZE each. A
# part is also the unit of resume bookkeeping, so a kill loses at most the unsaved tail of each
# part in flight.
DEFAULT_PARTS_PER_FILE = 4
DEFAULT_PART_SIZE_BYTES = 32 * 1024 * 1024
# A request that delivers no byte for this long is stalled: it is dropped and retried.
DEFAULT_STALL_TIMEOUT_S = 30.0
# Retries per request (a request that made progress starts counting again), and the backoff.
DEFAULT_MAX_RETRIES = 5
DEFAULT_RETRY_BASE_S = 0.5
DEFAULT_RETRY_MAX_S = 30.0
# A source that just failed as unavailable is skipped for this long (negative cache).
DEFAULT_SOURCE_FAILURE_TTL_S = 60.0
DEFAULT_HF_ENDPOINT = "https://huggingface.co"


def default_models_root() -> Path:
    from platformdirs import user_data_path

    return user_data_path(APP_NAME, APP_AUTHOR) / "models"


def default_config_dir() -> Path:
    from platformdirs import user_config_path

    return user_config_path(APP_NAME, APP_AUTHOR)


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The user config folder of every part of the app; ``WAN_CONFIG_DIR`` moves it."""
    env = os.environ if environ is None else environ
    override = env.get(ENV_CONFIG_DIR, "").strip()
    return Path(override).expanduser() if override else default_config_dir()


def _first(env: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value
    return None


@dataclass(frozen=True)
class S3Config:
    """Where and as whom to reach S3. Keys: the environment, else ``AWS_PROFILE``, else the pair
    the desktop app keeps in the OS keyring (``use_keyring``), else boto3's own chain."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    use_keyring: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> S3Config:
        return cls(
            endpoint_url=_first(env, ENV_AWS_ENDPOINT_URL),
            region=_first(env, ENV_AWS_REGION),
            profile=_first(env, (ENV_AWS_PROFILE,)),
            access_key_id=_first(env, (ENV_AWS_ACCESS_KEY_ID,)),
            secret_access_key=_first(env, (ENV_AWS_SECRET_ACCESS_KEY,)),
            session_token=_first(env, (ENV_AWS_SESSION_TOKEN,)),
        )


@dataclass(frozen=True)
class HfConfig:
    endpoint: str = DEFAULT_HF_ENDPOINT
    token_env: str | None = field(default=None, repr=False)  # HF_TOKEN; the keyring comes first
    offline: bool = False
    use_keyring: bool = True


def _source_manifest() -> Path:
    # Source checkout: the manifest sits at the repository root.
    return Path(__file__).resolve().parents[2] / "models.toml"


def _packaged_manifest() -> Path:
    # Wheels and bundles carry it as package data.
    return Path(__file__).resolve().parents[1] / "resources" / "models.toml"


def default_manifest_path() -> Path:
    packaged = _packaged_manifest()
    return packaged if packaged.is_file() else _source_manifest()


@dataclass(frozen=True)
class OrchestratorConfig:
    models_root: Path
    manifest_path: Path
    dev_mode: bool = False
    local_mirror: Path | None = None
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
    max_concurrent_downloads: int = DEFAULT_MAX_CONCURRENT_DOWNLOADS
    free_space_reserve_bytes: int = DEFAULT_FREE_SPACE_RESERVE_BYTES
    extra: dict[str, str] = field(default_factory=dict)
    config_dir: Path | None = None
    # Disk: quotas and the age past which an unused model may be collected (None: no limit).
    quota_bytes: int | None = None
    family_quota_bytes: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    max_age_s: float | None = None
    # Transfers.
    parts_per_file: int = DEFAULT_PARTS_PER_FILE
    part_size_bytes: int = DEFAULT_PART_SIZE_BYTES
    stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S
    max_retries: int = DEFAULT_MAX_RETRIES
    retry_base_s: float = DEFAULT_RETRY_BASE_S
    retry_max_s: float = DEFAULT_RETRY_MAX_S
    source_failure_ttl_s: float = DEFAULT_SOURCE_FAILURE_TTL_S
    # Benchmarks measure what hashing costs by turning it off; nothing else does.
    verify_sha256: bool = True
    # Sources and the manifest's signature.
    hf: HfConfig = field(default_factory=HfConfig)
    s3: S3Config = field(default_factory=S3Config)
    manifest_public_key: str | None = None
    require_manifest_signature: bool = False
    proxies: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    no_proxy: str = ""

    @property
    def settings_path(self) -> Path:
        return (self.config_dir or default_config_dir()) / SETTINGS_FILE

    @classmethod
    def from_env(
        cls, environ: dict[str, str] | None = None, **overrides: object
    ) -> OrchestratorConfig:
        env = dict(os.environ if environ is None else environ)
        root = env.get(ENV_MODELS_ROOT)
        manifest = env.get(ENV_MANIFEST)
        mirror = env.get(ENV_LOCAL_MIRROR)
        cfg_dir = config_dir(env)
        # The settings file first, then the environment over it.
        st: Settings = load_settings(cfg_dir / SETTINGS_FILE)
        quota_env = env.get(ENV_QUOTA, "").strip()
        try:
            quota = parse_size(quota_env) if quota_env else st.quota_bytes
            part_size_env = env.get(ENV_PART_SIZE, "").strip()
            part_size = parse_size(part_size_env) if part_size_env else st.part_size_bytes
        except ValueError as exc:
            raise ValueError(f"{exc}; fix {ENV_QUOTA} or {ENV_PART_SIZE}") from None
        cfg = cls(
            models_root=Path(root).expanduser() if root else default_models_root(),
            manifest_path=Path(manifest).expanduser() if manifest else default_manifest_path(),
            dev_mode=envvars.flag(env, ENV_DEV_MODE),
            local_mirror=Path(mirror).expanduser() if mirror else None,
            lock_timeout_s=envvars.number(env, ENV_LOCK_TIMEOUT, DEFAULT_LOCK_TIMEOUT_S),
            max_concurrent_downloads=max(
                1,
                int(
                    envvars.number(
                        env,
                        ENV_MAX_CONCURRENT_DOWNLOADS,
                        st.max_concurrent_downloads or DEFAULT_MAX_CONCURRENT_DOWNLOADS,
                    )
                ),
            ),
            free_space_reserve_bytes=int(
                envvars.number(
                    env, ENV_FREE_SPACE_RESERVE, DEFAULT_FREE_SPACE_RESERVE_BYTES / 2**20
                )
                * 2**20
            ),
            config_dir=cfg_dir,
            quota_bytes=quota,
            family_quota_bytes=st.family_quota_bytes,
            max_age_s=st.max_age_s,
            parts_per_file=max(
                1,
                int(
                    envvars.number(
                        env, ENV_PARTS_PER_FILE, st.parts_per_file or DEFAULT_PARTS_PER_FILE
                    )
                ),
            ),
            part_size_bytes=max(1 << 20, part_size or DEFAULT_PART_SIZE_BYTES),
            stall_timeout_s=envvars.number(env, ENV_STALL_TIMEOUT, DEFAULT_STALL_TIMEOUT_S),
            hf=HfConfig(
                endpoint=(env.get(ENV_HF_ENDPOINT, "").strip() or DEFAULT_HF_ENDPOINT).rstrip("/"),
                token_env=env.get(ENV_HF_TOKEN, "").strip() or None,
                offline=envvars.flag(env, ENV_HF_OFFLINE),
            ),
            s3=S3Config.from_env(env),
            manifest_public_key=env.get(ENV_MANIFEST_PUBLIC_KEY, "").strip()
            or st.manifest_public_key,
            require_manifest_signature=st.require_manifest_signature,
            proxies=MappingProxyType(
                {
                    scheme: value
                    for scheme in ("http", "https")
                    if (value := _first(env, (f"{scheme.upper()}_PROXY", f"{scheme}_proxy")))
                }
            ),
            no_proxy=_first(env, ("NO_PROXY", "no_proxy")) or "",
        )
        return replace(cfg, **overrides) if overrides else cfg  # type: ignore[arg-type]
