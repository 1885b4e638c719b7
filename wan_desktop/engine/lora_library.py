"""The LoRA folder: list, check, install, inspect and delete LoRA files.

Engine-side so the GUI and the API share it. Applying a LoRA to a pipeline is ``lora.py``'s job;
this module only manages files. A file is accepted when its tensor names look like a LoRA
(``lora_A``/``lora_B``, ``lora_down``/``lora_up``, LyCORIS…) — read from the safetensors header, or
from a torch zip archive's pickle with a restricted unpickler (``lora_formats.py``) — so nothing
here imports torch or runs code from the file. Names are sanitised and every path stays inside
the folder.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import uuid
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wan_desktop.models.settings import format_size

from .errors import EngineError, InvalidInputError
from .lora_formats import (
    MB,
    element_count,
    looks_like_safetensors,
    not_loadable,
    safetensors_header,
    tensor_name,
    torch_zip_tensors,
)

LORA_EXTENSIONS = (".safetensors", ".pt", ".pth", ".bin")
MAX_LORA_BYTES = 500 * 1024 * 1024
NAME_MAX = 100
REF_PREFIX = "loras/"
INCOMING = ".incoming"

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_LORA_KEY = re.compile(
    r"(lora_A|lora_B|lora_down|lora_up|lora\.down|lora\.up|lora_linear_layer|"
    r"hada_w[12]_[ab]|lokr_w[12]|\.diff$|\.diff_b$)"
)
_DOWN_KEY = re.compile(r"(lora_A|lora_down|lora\.down|hada_w1_a)")
_STRIP_KEY = re.compile(
    r"(\.lora_A|\.lora_B|\.lora_down|\.lora_up|\.lora\.down|\.lora\.up|\.alpha|"
    r"\.hada_w[12]_[ab]|\.lokr_w[12]|\.diff_b|\.diff)(\.[^.]*)?(\.weight)?$"
)
_BLOCK_INDEX = re.compile(r"(blocks[._])\d+")
_PREFIXES = ("diffusion_model.", "transformer.", "model.", "base_model.model.")
# Adapters are applied in the pipeline's dtype: bf16 on a GPU.
APPLIED_BYTES_PER_PARAM = 2


class LoraNotFoundError(EngineError, LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no LoRA named {name!r}; see the LoRA list for the names there are")
        self.name = name


class LoraExistsError(EngineError, FileExistsError):
    def __init__(self, filename: str) -> None:
        super().__init__(
            f"a LoRA named {filename!r} exists already; delete it first or upload under "
            "another name"
        )
        self.lora_filename = filename  # not .filename: OSError would print it as a path


@dataclass(frozen=True)
class LoraFile:
    name: str  # the stem, e.g. "anime_style"
    filename: str  # e.g. "anime_style.safetensors"
    path: Path
    size_bytes: int
    modified: float

    @property
    def ref(self) -> str:
        """How jobs and the API name it: ``loras/<file>``."""
        return f"{REF_PREFIX}{self.filename}"

    @property
    def size_mb(self) -> float:
        return self.size_bytes / MB


@dataclass(frozen=True)
class LoraInfo:
    file: LoraFile
    format: str  # "safetensors" or "torch"
    tensors: int
    params: int
    rank: int | None
    alpha: float | None
    modules: tuple[str, ...]  # targeted module patterns, block numbers folded ("blocks.*.ffn.0")
    dtypes: tuple[str, ...]
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def applied_mb(self) -> float:
        """Memory the adapter weights take once applied (in the pipeline's bf16)."""
        return self.params * APPLIED_BYTES_PER_PARAM / MB

    def memory_impact(self) -> dict[str, Any]:
        """What loading it costs. On two-expert models each expert gets its own copy."""
        per_expert = round(self.applied_mb, 2)
        return {
            "adapter_params": self.params,
            "adapter_mb": per_expert,
            "two_expert_mb": round(2 * per_expert, 2),
            "file_mb": round(self.file.size_mb, 2),
            "rank": self.rank,
            "estimated_vram_increase_mb": per_expert,
            "fused_extra_mb": 0.0,
            "note": (
                "adapters stay beside the weights while active; an A14B model with the LoRA "
                "on both experts needs two_expert_mb"
            ),
        }


class LoraLibrary:
    """One folder of LoRA files (``EngineSettings.loras_dir``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    # ------------------------------------------------------------------------------ names

    @staticmethod
    def sanitize(name: str) -> str:
        """A safe file stem: letters, digits, ``._-``; no leading dots; at most NAME_MAX."""
        stem = _SAFE_NAME.sub("_", name.strip()).strip("._-")[:NAME_MAX]
        if not stem:
            raise InvalidInputError(
                {"name": "give a name with letters or digits (spaces become underscores)"}
            )
        return stem

    @staticmethod
    def check_extension(filename: str) -> str:
        ext = Path(filename).suffix.lower()
        if ext not in LORA_EXTENSIONS:
            raise InvalidInputError(
                {
                    "file": f"{filename!r} is not a LoRA file; use one of "
                    f"{', '.join(LORA_EXTENSIONS)}"
                }
            )
        return ext

    # ------------------------------------------------------------------------------ lookup

    def list(self) -> list[LoraFile]:
        if not self.root.is_dir():
            return []
        out = []
        for p in self.root.iterdir():
            if p.suffix.lower() in LORA_EXTENSIONS and p.is_file() and not p.name.startswith("."):
                st = p.stat()
                out.append(LoraFile(p.stem, p.name, p, st.st_size, st.st_mtime))
        return sorted(out, key=lambda f: f.filename.lower())

    def get(self, name: str) -> LoraFile:
        """By file name or stem (a .safetensors wins when several files share a stem)."""
        name = name.strip()
        if name.startswith(REF_PREFIX):
            name = name[len(REF_PREFIX) :]
        files = self.list()
        for f in files:
            if f.filename == name:
                return f
        same_stem = [f for f in files if f.name == name]
        if not same_stem:
            raise LoraNotFoundError(name)
        same_stem.sort(key=lambda f: LORA_EXTENSIONS.index(f.path.suffix.lower()))
        return same_stem[0]

    def resolve(self, ref: str, *, field_name: str = "lora_path") -> Path:
        """``loras/<file>`` (or a bare file name) to its absolute path inside the folder."""
        raw = ref.strip()
        rel = raw[len(REF_PREFIX) :] if raw.startswith(REF_PREFIX) else raw
        if not rel or "/" in rel or "\\" in rel or rel in (".", "..") or "\x00" in rel:
            raise InvalidInputError(
                {field_name: f"{ref!r} is not a LoRA of the list; give loras/<file> from it"}
            )
        try:
            f = self.get(rel)
        except LoraNotFoundError:
            raise InvalidInputError(
                {field_name: f"no LoRA {ref!r}; upload it first or pick one from the list"}
            ) from None
        path = f.path.resolve()
        if path.parent != self.root.resolve():
            raise InvalidInputError({field_name: f"{ref!r} points outside the LoRA folder"})
        return path

    # ---------------------------------------------------------------------------- inspect

    def inspect(self, name: str) -> LoraInfo:
        return inspect_file(self.get(name))

    # ---------------------------------------------------------------------------- install

    @contextlib.contextmanager
    def incoming(self, suffix: str) -> Iterator[Path]:
        """A temporary file on the same disk, removed unless installed."""
        folder = self.root / INCOMING
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{uuid.uuid4().hex}{suffix}"
        try:
            yield tmp
        finally:
            tmp.unlink(missing_ok=True)

    def install(self, tmp: Path, filename: str) -> LoraInfo:
        """Check ``tmp`` is a loadable LoRA, then move it in as ``filename`` (never overwriting)."""
        ext = self.check_extension(filename)
        stem = self.sanitize(Path(filename).stem)
        dest = self.root / f"{stem}{ext}"
        size = tmp.stat().st_size
        if size == 0:
            raise InvalidInputError({"file": "the file is empty"})
        if size > MAX_LORA_BYTES:
            raise InvalidInputError({"file": f"the file is over {format_size(MAX_LORA_BYTES)}"})
        if any(f.name == stem for f in self.list()):
            raise LoraExistsError(dest.name)
        info = inspect_file(LoraFile(stem, dest.name, tmp, size, tmp.stat().st_mtime))
        try:
            os.link(tmp, dest)  # atomic, and fails rather than overwrite
        except FileExistsError:
            raise LoraExistsError(dest.name) from None
        except OSError:
            # Filesystems without hard links: claim the name exclusively, then move in.
            try:
                dest.open("xb").close()
            except FileExistsError:
                raise LoraExistsError(dest.name) from None
            tmp.replace(dest)
        tmp.unlink(missing_ok=True)
        st = dest.stat()
        return LoraInfo(
            **{
                **info.__dict__,
                "file": LoraFile(stem, dest.name, dest, st.st_size, st.st_mtime),
            }
        )

    def delete(self, name: str) -> LoraFile:
        f = self.get(name)
        f.path.unlink()
        return f


# -------------------------------------------------------------------------------- reading


def inspect_file(f: LoraFile) -> LoraInfo:
    """Tensor names and shapes of a LoRA file; InvalidInputError naming the file if not one."""
    try:
        return _inspect(f)
    except InvalidInputError as exc:
        raise InvalidInputError({k: f"{f.filename}: {v}" for k, v in exc.errors.items()}) from None
    except (
        ValueError,
        TypeError,
        OverflowError,
        RecursionError,
        KeyError,
        IndexError,
        AttributeError,
        struct.error,
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
    ) as exc:
        # Whatever a crafted file does to the readers (lora_formats.py), it is the file's
        # fault: a 422.
        raise InvalidInputError(
            {
                "file": f"{f.filename}: not a loadable LoRA: the file is damaged or crafted "
                f"({type(exc).__name__})"
            }
        ) from None


def _inspect(f: LoraFile) -> LoraInfo:
    # The bytes decide, not the extension (.bin and .pt files are sometimes safetensors).
    metadata: dict[str, str] = {}
    if zipfile.is_zipfile(f.path):
        tensors = torch_zip_tensors(f.path)
        fmt = "torch"
    elif Path(f.filename).suffix.lower() == ".safetensors" or looks_like_safetensors(f.path):
        tensors, metadata = safetensors_header(f.path)
        fmt = "safetensors"
    else:
        raise not_loadable(
            "only safetensors files and torch zip archives (torch.save since 1.6) can be "
            "checked; convert it to .safetensors"
        )
    return _summarise(f, fmt, tensors, metadata)


def _summarise(
    f: LoraFile,
    fmt: str,
    tensors: Mapping[str, tuple[str, list[int]]],
    metadata: Mapping[str, str],
) -> LoraInfo:
    lora_keys = [k for k in tensors if _LORA_KEY.search(k)]
    downs = [k for k in lora_keys if _DOWN_KEY.search(k)]
    if not lora_keys or not downs:
        sample = ", ".join(tensor_name(k) for k in list(tensors)[:3]) or "none"
        raise InvalidInputError(
            {
                "file": "this is not a LoRA: no lora_A/lora_B (or lora_down/lora_up) weights "
                f"(first tensors: {sample}); upload a LoRA trained for Wan2.x"
            }
        )
    ranks = sorted({min(tensors[k][1]) for k in downs if len(tensors[k][1]) >= 2})
    params = sum(element_count(tensors[k][1]) for k in lora_keys)
    modules = set()
    for k in lora_keys:
        module = _STRIP_KEY.sub("", k)
        for prefix in _PREFIXES:
            if module.startswith(prefix):
                module = module[len(prefix) :]
        modules.add(_BLOCK_INDEX.sub(r"\1*", module))
    # kohya-style files record alpha in the metadata; per-module alpha tensors need the data.
    alpha = None
    with contextlib.suppress(ValueError):
        alpha = float(metadata["ss_network_alpha"]) if "ss_network_alpha" in metadata else None
    return LoraInfo(
        file=f,
        format=fmt,
        tensors=len(tensors),
        params=params,
        rank=ranks[-1] if ranks else None,
        alpha=alpha,
        modules=tuple(sorted(modules)),
        dtypes=tuple(sorted({dt for dt, _ in tensors.values()})),
        metadata=dict(metadata),
    )
