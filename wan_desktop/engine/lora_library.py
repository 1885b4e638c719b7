"""The LoRA folder: list, check, install, inspect and delete LoRA files.

Engine-side so the GUI and the API share it. Applying a LoRA to a pipeline is ``lora.py``'s job;
this module only manages files. A file is accepted when its tensor names look like a LoRA
(``lora_A``/``lora_B``, ``lora_down``/``lora_up``, LyCORIS…) — read from the safetensors header, or
from a torch zip archive's pickle with a restricted unpickler — so nothing here imports torch or
runs code from the file. Names are sanitised and every path stays inside the folder.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import re
import struct
import uuid
import zipfile
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wan_desktop.models.settings import format_size

from .errors import EngineError, InvalidInputError

LORA_EXTENSIONS = (".safetensors", ".pt", ".pth", ".bin")
MAX_LORA_BYTES = 500 * 1024 * 1024
NAME_MAX = 100
REF_PREFIX = "loras/"
INCOMING = ".incoming"
MB = 1024 * 1024
# A safetensors header larger than this is not a LoRA (and not worth parsing).
MAX_HEADER_BYTES = 64 * MB
# A torch archive's pickle (names and shapes only) larger than this is not a LoRA's: refused by
# its declared size, and read through a bounded reader in case the declaration lies.
MAX_PICKLE_BYTES = 16 * MB
MAX_DIMS = 8

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
_DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}
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


def _tensor_info(key: str, shape: list[int]) -> tuple[str | None, int]:
    numel = 1
    for d in shape:
        numel *= int(d)
    return (key if _LORA_KEY.search(key) else None), numel


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
        # Whatever a crafted file does to the readers below, it is the file's fault: a 422.
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
        tensors = _torch_zip_tensors(f.path)
        fmt = "torch"
    elif Path(f.filename).suffix.lower() == ".safetensors" or _looks_like_safetensors(f.path):
        tensors, metadata = _safetensors_header(f.path)
        fmt = "safetensors"
    else:
        raise _not_loadable(
            "only safetensors files and torch zip archives (torch.save since 1.6) can be "
            "checked; convert it to .safetensors"
        )
    return _summarise(f, fmt, tensors, metadata)


def _dims(value: Any, *, length: int | None = None) -> list[int] | None:
    """A list of non-negative integers (JSON numbers like 1e999 or Infinity are not), else None."""
    if not isinstance(value, list | tuple) or len(value) > MAX_DIMS:
        return None
    if length is not None and len(value) != length:
        return None
    if not all(type(d) is int and d >= 0 for d in value):
        return None
    return list(value)


def _summarise(
    f: LoraFile,
    fmt: str,
    tensors: Mapping[str, tuple[str, list[int]]],
    metadata: Mapping[str, str],
) -> LoraInfo:
    lora_keys = [k for k in tensors if _LORA_KEY.search(k)]
    downs = [k for k in lora_keys if _DOWN_KEY.search(k)]
    if not lora_keys or not downs:
        sample = ", ".join(_name(k) for k in list(tensors)[:3]) or "none"
        raise InvalidInputError(
            {
                "file": "this is not a LoRA: no lora_A/lora_B (or lora_down/lora_up) weights "
                f"(first tensors: {sample}); upload a LoRA trained for Wan2.x"
            }
        )
    ranks = sorted({min(tensors[k][1]) for k in downs if len(tensors[k][1]) >= 2})
    params = sum(_tensor_info(k, tensors[k][1])[1] for k in lora_keys)
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


def _not_loadable(why: str) -> InvalidInputError:
    return InvalidInputError({"file": f"not a loadable LoRA: {why}"})


def _name(key: str) -> str:
    """A tensor name as it can be shown: quoted, escaped, at most 80 characters."""
    return repr(key if len(key) <= 80 else key[:79] + "…")


def _excerpt(text: str) -> str:
    """Text from the file, short and always valid to send (no lone surrogates)."""
    text = text if len(text) <= 200 else text[:199] + "…"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _looks_like_safetensors(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _safetensors_header(path: Path) -> tuple[dict[str, tuple[str, list[int]]], dict[str, str]]:
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise _not_loadable("the file is too short to be safetensors")
        (n,) = struct.unpack("<Q", head)
        if n < 2 or n > min(MAX_HEADER_BYTES, size - 8):
            raise _not_loadable("the safetensors header size is impossible for this file")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _not_loadable("the safetensors header is not JSON") from None
    except RecursionError:
        raise _not_loadable("the safetensors header is nested too deep") from None
    if not isinstance(header, dict):
        raise _not_loadable("the safetensors header is not a table of tensors")
    data_size = size - 8 - n
    meta = header.pop("__metadata__", None) or {}
    tensors: dict[str, tuple[str, list[int]]] = {}
    for key, entry in header.items():
        shape = offsets = None
        if isinstance(entry, dict):
            shape = _dims(entry.get("shape"))
            offsets = _dims(entry.get("data_offsets"), length=2)
        if shape is None or offsets is None or not isinstance(entry.get("dtype"), str):
            raise _not_loadable(f"tensor {_name(key)} has a malformed entry")
        dtype = str(entry["dtype"])
        start, end = offsets
        numel = _tensor_info(key, shape)[1]
        width = _DTYPE_BYTES.get(dtype)
        if width is None or not 0 <= start <= end <= data_size or end - start != numel * width:
            raise _not_loadable(
                f"tensor {_name(key)} does not fit the file (truncated or damaged?)"
            )
        tensors[key] = (dtype, shape)
    metadata = {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}
    return tensors, metadata


# A torch zip archive's data.pkl, read with nothing but tensor shapes allowed: no code runs.


@dataclass(frozen=True)
class _StorageType:
    name: str


@dataclass(frozen=True)
class _Storage:
    dtype: str


@dataclass(frozen=True)
class _Tensor:
    dtype: str
    shape: tuple[int, ...]


def _rebuild_tensor(storage: Any, _offset: Any = 0, size: Any = None, *_rest: Any) -> _Tensor:
    shape = _dims(size)
    if not isinstance(storage, _Storage) or shape is None:
        raise pickle.UnpicklingError("a tensor with a malformed storage or size")
    return _Tensor(storage.dtype, tuple(shape))


def _rebuild_parameter(data: _Tensor, *_rest: Any) -> _Tensor:
    return data


_STORAGE_DTYPES = {
    "FloatStorage": "F32",
    "HalfStorage": "F16",
    "BFloat16Storage": "BF16",
    "DoubleStorage": "F64",
    "LongStorage": "I64",
    "IntStorage": "I32",
    "ByteStorage": "U8",
    "CharStorage": "I8",
    "BoolStorage": "BOOL",
}


class _ShapesUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) in (
            ("torch._utils", "_rebuild_tensor_v2"),
            ("torch._utils", "_rebuild_tensor"),
        ):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a LoRA file")

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and pid and pid[0] == "storage":
            kind = pid[1]
            return _Storage(_STORAGE_DTYPES.get(getattr(kind, "name", ""), "F32"))
        raise pickle.UnpicklingError("unexpected persistent object")


def _torch_zip_tensors(path: Path) -> dict[str, tuple[str, list[int]]]:
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if not names:
                raise _not_loadable("the archive has no data.pkl: it is not a torch file")
            too_big = _not_loadable(
                f"its data.pkl unpacks to more than {MAX_PICKLE_BYTES // MB} MB, which no LoRA's "
                "does (a zip bomb?)"
            )
            if zf.getinfo(names[0]).file_size > MAX_PICKLE_BYTES:
                raise too_big
            chunks: list[bytes] = []
            size = 0
            with zf.open(names[0]) as entry:
                # In small reads: the inflater never makes more than one chunk past the limit.
                while chunk := entry.read(MB):
                    size += len(chunk)
                    if size > MAX_PICKLE_BYTES:
                        raise too_big
                    chunks.append(chunk)
            raw = b"".join(chunks)
    except InvalidInputError:
        raise
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        EOFError,
        ValueError,
        NotImplementedError,
    ) as exc:
        raise _not_loadable(f"the torch archive is damaged ({_excerpt(str(exc))})") from None
    try:
        obj = _ShapesUnpickler(io.BytesIO(raw)).load()
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        OverflowError,
        RecursionError,
        KeyError,
        IndexError,
        AttributeError,
        struct.error,
    ) as exc:
        raise _not_loadable(
            "the torch file holds more than tensors, or is damaged "
            f"({type(exc).__name__}: {_excerpt(str(exc))})"
        ) from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise _not_loadable("the torch file does not hold a dictionary of tensors")
    return {str(k): (v.dtype, list(v.shape)) for k, v in obj.items() if isinstance(v, _Tensor)}
