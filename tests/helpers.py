"""Shared test helpers: synthetic models, manifests, and child processes that run the store."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import random
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomlkit

from wan_desktop.models.config import OrchestratorConfig
from wan_desktop.models.sources import FileSink, RemoteFile, register_scheme
from wan_desktop.models.sources.local import LocalSource
from wan_desktop.models.store import ModelStore

ROOT = Path(__file__).resolve().parents[1]
REAL_MANIFEST = ROOT / "models.toml"
SYNTH_ID = "synth@1.0.0"


@contextlib.contextmanager
def small_filesystem(point: Path, size: str, *, read_only: bool = False) -> Iterator[Path]:
    """A real tmpfs of ``size`` at ``point`` (read-only if asked) for the block: a disk that
    fills up, or one nobody can write, root included. Skips the test where mounting is not
    allowed."""
    point.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def real_manifest_data() -> dict[str, Any]:
    return tomllib.loads(REAL_MANIFEST.read_text("utf-8"))


def synth_model_entry(
    sources: list[str], files: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A manifest entry shaped like T2V-A14B whose default variant comes from ``sources``."""
    entry = copy.deepcopy(real_manifest_data()["models"]["t2v-A14B@2.2.0"])
    entry["aliases"] = ["SYNTH"]
    entry["allow_patterns"] = ["model_index.json", "transformer/*", "vae/*", "tokenizer/*"]
    entry["default_variant"] = "full"
    full: dict[str, Any] = {"dtype": "bfloat16", "description": "synthetic", "sources": sources}
    if files is not None:
        full["files"] = files
    entry["variants"] = {"full": full, "tiny": entry["variants"]["tiny"]}
    return entry


def write_manifest(path: Path, models: dict[str, Any], *, schema_version: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomlkit.dumps({"schema_version": schema_version, "models": models}), "utf-8")
    return path


@dataclass(frozen=True)
class SynthFolder:
    path: Path
    files: dict[str, bytes | int]  # content, or size of a random file written to disk

    def total(self) -> int:
        return sum((self.path / p).stat().st_size for p in self.files)

    def manifest_files(self) -> list[dict[str, Any]]:
        out = []
        for rel in sorted(self.files):
            p = self.path / rel
            out.append({"path": rel, "size": p.stat().st_size, "sha256": sha256(p)})
        return out


def make_synth_folder(
    path: Path, big: dict[str, int] | None = None, *, seed: int = 0
) -> SynthFolder:
    """A diffusers-shaped folder: model_index.json, small configs and a few large random files."""
    rng = random.Random(seed)
    files: dict[str, bytes | int] = {
        "model_index.json": json.dumps({"_class_name": "WanPipeline"}).encode(),
        "transformer/config.json": b'{"num_layers": 2}',
        "vae/config.json": b'{"z_dim": 16}',
        "tokenizer/tokenizer.json": b'{"model": {}}',
        "README.md": b"not part of the model (excluded by allow_patterns)",
    }
    for rel, size in (big or {"transformer/weights-00001.safetensors": 3_000_000}).items():
        files[rel] = size
    for rel, content in files.items():
        dest = path / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            dest.write_bytes(content)
        else:
            with dest.open("wb") as fh:
                remaining = content
                while remaining:
                    n = min(remaining, 1 << 20)
                    fh.write(rng.randbytes(n))
                    remaining -= n
    del files["README.md"]
    (path / "README.md").unlink()
    return SynthFolder(path, files)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_store(root: Path, manifest: Path, **overrides: Any) -> ModelStore:
    # Only the settings folder comes from the environment (the test's own, see conftest).
    env = {k: os.environ[k] for k in ("WAN_CONFIG_DIR",) if k in os.environ}
    cfg = OrchestratorConfig.from_env(env, models_root=root, manifest_path=manifest, **overrides)
    return ModelStore(cfg)


class SlowLocalSource(LocalSource):
    """The real local source, throttled so another process can act mid-transfer.

    With a ``gate`` path a large file stops after its first chunk until that file exists, so a
    test can hold a transfer open for as long as it needs, whatever the machine's load.
    """

    delay_s = 0.0
    chunk = 1 << 20
    gate: Path | None = None

    def fetch(self, file: RemoteFile, sink: FileSink) -> None:
        with Path(file.ref).open("rb") as fh:
            fh.seek(sink.offset)
            while data := fh.read(self.chunk):
                sink.write(data)
                time.sleep(self.delay_s)
                # Hold only after a full chunk, which is on disk (small writes sit in a buffer).
                while sink.offset >= self.chunk and self.gate and not self.gate.exists():
                    time.sleep(0.01)


def child_ensure_main() -> None:
    """A child process: ``python -c ... root manifest model result.json delay [gate]``.

    Writes ``<result>.waiting`` as soon as it sees that another process holds the model's lock.
    """
    root, manifest, model, result = (Path(a) for a in sys.argv[1:5])
    SlowLocalSource.delay_s = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    SlowLocalSource.gate = Path(sys.argv[6]) if len(sys.argv) > 6 else None
    register_scheme("local", SlowLocalSource)
    store = make_store(root, manifest, max_concurrent_downloads=2)
    transferred = 0
    waited = False

    def on_progress(p: Any) -> None:
        nonlocal transferred, waited
        transferred = p.bytes_transferred
        if str(p.phase) == "waiting_for_lock" and not waited:
            waited = True
            result.with_suffix(".waiting").touch()

    started = time.monotonic()
    path = store.ensure(str(model), progress=on_progress)
    result.write_text(
        json.dumps(
            {
                "path": str(path),
                "transferred": transferred,
                "waited": waited,
                "seconds": time.monotonic() - started,
                "pid": os.getpid(),
            }
        )
    )


def spawn_ensure(
    root: Path,
    manifest: Path,
    model: str,
    result: Path,
    delay: float = 0.0,
    gate: Path | None = None,
) -> subprocess.Popen[bytes]:
    code = "import tests.helpers as h; h.child_ensure_main()"
    extra = [str(gate)] if gate is not None else []
    args = [str(root), str(manifest), model, str(result), str(delay), *extra]
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
