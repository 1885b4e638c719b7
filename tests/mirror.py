"""A local mirror folder shaped like a diffusers model, and a local source paced like a network.

For the screenshots and the UI benchmark: a model download that is really running (real
transfer, real progress events) while the app is watched.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from wan_desktop.models import sources as model_sources
from wan_desktop.models.sources.base import FileSink, RemoteFile
from wan_desktop.models.sources.local import LocalSource


def make_mirror(folder: Path, size_mb: int) -> None:
    """Configs and three transformer shards, ``size_mb`` random bytes in all (no two MiB alike)."""
    files = {
        "model_index.json": b'{"_class_name": "WanPipeline"}',
        "scheduler/scheduler_config.json": b"{}",
        "vae/config.json": b"{}",
        "transformer/config.json": b"{}",
    }
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    block = os.urandom(1 << 20)
    for i in range(3):
        part = folder / "transformer" / f"diffusion_pytorch_model-0000{i + 1}-of-00003.safetensors"
        with part.open("wb") as fh:
            for n in range(size_mb // 3):
                fh.write(block[n % 997 :] + block[: n % 997])


def pace_local_source(seconds_per_mb: float) -> None:
    """From now on in this process, ``local://`` sources deliver a MiB every ``seconds_per_mb``."""

    class PacedLocal(LocalSource):
        def fetch(self, file: RemoteFile, sink: FileSink) -> None:
            with Path(file.ref).open("rb") as fh:
                fh.seek(sink.offset)
                while data := fh.read(1 << 20):
                    sink.write(data)
                    time.sleep(seconds_per_mb)

    model_sources._FACTORIES["local"] = PacedLocal
