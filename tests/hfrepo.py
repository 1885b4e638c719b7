"""Test repositories on the local Hub server and stores that download from it."""

from __future__ import annotations

import json
import os
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

from tests.helpers import SYNTH_ID, make_store, synth_model_entry, write_manifest
from tests.hubserver import HubRepo, HubServer, PatternContent
from wan_desktop.models.config import HfConfig
from wan_desktop.models.store import ModelStore

MIB = 1 << 20
REPO = "wan-test/Synth-Diffusers"
SHARDS = {
    "transformer/diffusion_pytorch_model-00001-of-00002.safetensors": 5 * MIB + 123,
    "transformer/diffusion_pytorch_model-00002-of-00002.safetensors": 3 * MIB + 7,
}
UNINDEXED = "transformer/diffusion_pytorch_model.fp32.safetensors"  # not in the weight_map
VAE = "vae/diffusion_pytorch_model.safetensors"


def add_synth_repo(
    hub: HubServer, repo_id: str = REPO, *, seed: int = 0, extra_small: int = 30, **kw: Any
) -> HubRepo:
    """A diffusers-shaped repository: index + two shards, a stray unindexed copy, small files."""
    repo = hub.add_repo(repo_id, **kw)
    rng = random.Random(seed)
    repo.add("model_index.json", json.dumps({"_class_name": "WanPipeline"}).encode())
    repo.add("README.md", b"# not part of the model\n")
    repo.add("transformer/config.json", b'{"num_layers": 2}')
    for i, (path, size) in enumerate(SHARDS.items()):
        repo.add(path, PatternContent(size, seed=seed * 10 + i), lfs=True)
    index = {
        "metadata": {"total_size": sum(SHARDS.values())},
        "weight_map": {f"w{i}": p.rsplit("/", 1)[1] for i, p in enumerate(SHARDS)},
    }
    repo.add(
        "transformer/diffusion_pytorch_model.safetensors.index.json", json.dumps(index).encode()
    )
    repo.add(UNINDEXED, PatternContent(2 * MIB, seed=seed * 10 + 9), lfs=True)
    repo.add(VAE, PatternContent(MIB + 5, seed=seed * 10 + 8), lfs=True)
    repo.add("vae/config.json", b'{"z_dim": 16}')
    for i in range(extra_small):  # many small files: the tree is paged
        repo.add(f"tokenizer/part-{i:03d}.json", rng.randbytes(200 + i), lfs=False)
    return repo


def expected_files(repo: HubRepo) -> set[str]:
    return {p for p in repo.files if p not in ("README.md", UNINDEXED)}


def hf_manifest(tmp_path: Path, repo_id: str = REPO, rev: str = "main") -> Path:
    return write_manifest(
        tmp_path / "models.toml", {SYNTH_ID: synth_model_entry([f"hf://{repo_id}@{rev}"])}
    )


def fast_transfer(**overrides: Any) -> dict[str, Any]:
    """Small parts, short stall timeout and backoff: faults play out in well under a second."""
    base: dict[str, Any] = {
        "part_size_bytes": MIB,
        "parts_per_file": 4,
        "stall_timeout_s": 1.0,
        "retry_base_s": 0.02,
        "retry_max_s": 0.2,
        "max_retries": 4,
        "source_failure_ttl_s": 0.0,
    }
    return {**base, **overrides}


def hf_store(
    tmp_path: Path,
    hub: HubServer,
    *,
    token: str | None = None,
    manifest: Path | None = None,
    **overrides: Any,
) -> ModelStore:
    manifest = manifest or hf_manifest(tmp_path)
    store = make_store(tmp_path / "models", manifest, **fast_transfer(**overrides))
    hf = HfConfig(endpoint=hub.url, token_env=token, offline=False, use_keyring=False)
    store.config = replace(store.config, hf=hf)
    return store


def hub_env(hub: HubServer, root: Path, manifest: Path, **extra: str) -> dict[str, str]:
    """Environment for a child `wan` process that downloads from ``hub``."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(
        {
            "HF_ENDPOINT": hub.url,
            "MODELS_ROOT": str(root),
            "WAN_MODELS_MANIFEST": str(manifest),
            "WAN_STALL_TIMEOUT": "5",
        }
    )
    env.update(extra)
    return env
