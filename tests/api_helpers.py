"""Helpers for API tests: an app over a mock engine, LoRA and image files made on the spot."""

from __future__ import annotations

import io
import json
import struct
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from fastapi.testclient import TestClient

from tests.engine_helpers import mock_engine
from wan_desktop.api.app import create_app
from wan_desktop.api.settings import ApiSettings
from wan_desktop.engine import Engine

TOKEN = "test-token-0123456789abcdef"
ORIGIN = "http://localhost:3000"


LOCAL = "http://127.0.0.1:8000"


class LocalClient(TestClient):
    """Calls the app as a local client would: the default "testserver" host is not this machine
    (the API refuses foreign Host headers without a token)."""

    def websocket_connect(self, url: str, subprotocols: Any = None, **kwargs: Any) -> Any:
        return super().websocket_connect(
            urljoin("ws://127.0.0.1:8000", url), subprotocols, **kwargs
        )


@contextmanager
def api_client(
    tmp_path: Path,
    *,
    settings: ApiSettings | None = None,
    engine: Engine | None = None,
    headers: Mapping[str, str] | None = None,
    **engine_overrides: Any,
) -> Iterator[tuple[TestClient, Engine]]:
    """A TestClient (lifespan running) over a mock engine; both stopped afterwards."""
    own = engine is None
    eng = engine or mock_engine(tmp_path, **engine_overrides)
    app = create_app(eng, settings or ApiSettings())
    try:
        with LocalClient(app, base_url=LOCAL, headers=dict(headers or {})) as client:
            yield client, eng
    finally:
        if own:
            eng.shutdown()


def safetensors_bytes(
    tensors: Mapping[str, tuple[str, list[int]]], metadata: Mapping[str, str] | None = None
) -> bytes:
    """A valid safetensors file of zero-filled tensors (dtype F32/F16/BF16)."""
    widths = {"F32": 4, "F16": 2, "BF16": 2}
    header: dict[str, Any] = {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        n = widths[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        header["__metadata__"] = dict(metadata)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + bytes(offset)


def lora_bytes(rank: int = 4, blocks: int = 2, dim: int = 24) -> bytes:
    """A Wan-style (diffusers/peft keys) LoRA on attention q/k of each block."""
    tensors: dict[str, tuple[str, list[int]]] = {}
    for b in range(blocks):
        for m in ("attn1.to_q", "attn1.to_k"):
            base = f"transformer.blocks.{b}.{m}"
            tensors[f"{base}.lora_A.weight"] = ("BF16", [rank, dim])
            tensors[f"{base}.lora_B.weight"] = ("BF16", [dim, rank])
    return safetensors_bytes(tensors, {"ss_network_alpha": "4"})


def not_lora_bytes() -> bytes:
    return safetensors_bytes({"blocks.0.attn1.to_q.weight": ("F32", [8, 8])})


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (64, 48)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(buf, format=fmt)
    return buf.getvalue()


def torch_zip_lora_bytes() -> bytes:
    """A torch.save-format archive (zip + data.pkl), written by torch itself."""
    import torch

    buf = io.BytesIO()
    torch.save(
        {
            "diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.zeros(8, 24),
            "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.zeros(24, 8),
        },
        buf,
    )
    data = buf.getvalue()
    assert zipfile.is_zipfile(io.BytesIO(data))
    return data


class WanServe:
    """A real ``wan serve --mock`` subprocess on a free port of 127.0.0.1; ``url`` once it listens.
    ``mock=False`` runs the real pipelines (with ``WAN_DEV_MODE=1``: the tiny models).

    Stopped (SIGINT, then kill) by ``stop()``, killed on leaving the ``with`` block.
    """

    def __init__(
        self,
        tmp_path: Path,
        *args: str,
        env: Mapping[str, str] | None = None,
        ignore_sigint: bool = False,
        mock: bool = True,
    ) -> None:
        import os
        import subprocess
        import sys

        from tests.helpers import REAL_MANIFEST, ROOT

        full_env = {
            **os.environ,
            "WAN_DATA_DIR": str(tmp_path / "data"),
            "MODELS_ROOT": str(tmp_path / "models"),
            "WAN_MODELS_MANIFEST": str(REAL_MANIFEST),
            "WAN_HARDWARE_PROFILE": json.dumps(
                {"device": "cpu", "gpu_name": None, "vram_total_mb": 0, "ram_total_mb": 8192}
            ),
            **(env or {}),
        }
        command = [sys.executable, "-m", "wan_desktop.cli", "serve", "--port", "0"]
        command += ["--mock", *args] if mock else list(args)
        if ignore_sigint:
            # As a script's background job ("wan serve &") starts: SIGINT ignored, inherited.
            command = ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *command]
        self.proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=full_env,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []  # stderr read so far
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if "Wan Desktop API at http://" in line:
                self.url = line.split(" at ", 1)[1].split(" ", 1)[0].rstrip(";")
                break
        else:
            raise AssertionError("wan serve did not start:\n" + "".join(self.lines))

    def stop(self, timeout: float = 30, sig: int = 2) -> tuple[int, str]:
        """SIGINT (as Ctrl-C) or ``sig``; its exit code and the rest of its stderr."""
        try:
            self.proc.send_signal(sig)
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        assert self.proc.stderr is not None
        rest = self.proc.stderr.read()
        self.proc.stderr.close()
        self.lines.append(rest)
        return code, rest

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def __enter__(self) -> WanServe:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr is not None and not self.proc.stderr.closed:
            self.proc.stderr.close()
