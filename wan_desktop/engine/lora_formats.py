"""Tensor names and shapes of a LoRA file, read without torch and without running its code: the
safetensors header (checked against the file's size), or a torch zip archive's pickle through an
unpickler that allows nothing but tensor shapes.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidInputError

MB = 1024 * 1024
# A safetensors header larger than this is not a LoRA (and not worth parsing).
MAX_HEADER_BYTES = 64 * MB
# A torch archive's pickle (names and shapes only) larger than this is not a LoRA's: refused by
# its declared size, and read through a bounded reader in case the declaration lies.
MAX_PICKLE_BYTES = 16 * MB
MAX_DIMS = 8
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


def element_count(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _dims(value: Any, *, length: int | None = None) -> list[int] | None:
    """A list of non-negative integers (JSON numbers like 1e999 or Infinity are not), else None."""
    if not isinstance(value, list | tuple) or len(value) > MAX_DIMS:
        return None
    if length is not None and len(value) != length:
        return None
    if not all(type(d) is int and d >= 0 for d in value):
        return None
    return list(value)


def not_loadable(why: str) -> InvalidInputError:
    return InvalidInputError({"file": f"not a loadable LoRA: {why}"})


def tensor_name(key: str) -> str:
    """A tensor name as it can be shown: quoted, escaped, at most 80 characters."""
    return repr(key if len(key) <= 80 else key[:79] + "…")


def _excerpt(text: str) -> str:
    """Text from the file, short and always valid to send (no lone surrogates)."""
    text = text if len(text) <= 200 else text[:199] + "…"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def looks_like_safetensors(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def safetensors_header(path: Path) -> tuple[dict[str, tuple[str, list[int]]], dict[str, str]]:
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise not_loadable("the file is too short to be safetensors")
        (n,) = struct.unpack("<Q", head)
        if n < 2 or n > min(MAX_HEADER_BYTES, size - 8):
            raise not_loadable("the safetensors header size is impossible for this file")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise not_loadable("the safetensors header is not JSON") from None
    except RecursionError:
        raise not_loadable("the safetensors header is nested too deep") from None
    if not isinstance(header, dict):
        raise not_loadable("the safetensors header is not a table of tensors")
    data_size = size - 8 - n
    meta = header.pop("__metadata__", None) or {}
    tensors: dict[str, tuple[str, list[int]]] = {}
    for key, entry in header.items():
        shape = offsets = None
        if isinstance(entry, dict):
            shape = _dims(entry.get("shape"))
            offsets = _dims(entry.get("data_offsets"), length=2)
        if shape is None or offsets is None or not isinstance(entry.get("dtype"), str):
            raise not_loadable(f"tensor {tensor_name(key)} has a malformed entry")
        dtype = str(entry["dtype"])
        start, end = offsets
        numel = element_count(shape)
        width = _DTYPE_BYTES.get(dtype)
        if width is None or not 0 <= start <= end <= data_size or end - start != numel * width:
            raise not_loadable(
                f"tensor {tensor_name(key)} does not fit the file (truncated or damaged?)"
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


def torch_zip_tensors(path: Path) -> dict[str, tuple[str, list[int]]]:
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if not names:
                raise not_loadable("the archive has no data.pkl: it is not a torch file")
            too_big = not_loadable(
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
        raise not_loadable(f"the torch archive is damaged ({_excerpt(str(exc))})") from None
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
        raise not_loadable(
            "the torch file holds more than tensors, or is damaged "
            f"({type(exc).__name__}: {_excerpt(str(exc))})"
        ) from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise not_loadable("the torch file does not hold a dictionary of tensors")
    return {str(k): (v.dtype, list(v.shape)) for k, v in obj.items() if isinstance(v, _Tensor)}
