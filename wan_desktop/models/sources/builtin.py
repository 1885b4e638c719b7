"""``builtin://tiny/<model>`` and ``builtin://random/<model>``: a development model built on
this machine from code (the tiny ones with their weights; the full-size random ones as configs
only, their weights made on the device when they load).

The build goes into the source's scratch folder; the files then travel the same path as any
download (sink, sha256, staging, atomic rename, completion marker).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import SourceError
from ..integrity import sha256_file
from .base import CHUNK_BYTES, FileSink, RemoteFile, Source


@dataclass
class BuiltinSource(Source):
    scheme = "builtin"
    _built: Path | None = None

    @property
    def name(self) -> str:
        return self.uri.removeprefix("builtin://").strip("/")

    def list_files(self) -> list[RemoteFile]:
        from .. import random_weights, tiny

        builders = {
            **dict.fromkeys(tiny.BUILDERS, tiny.build),
            **dict.fromkeys(tiny.LORA_BUILDERS, tiny.build_lora),
            **dict.fromkeys(random_weights.MODELS, random_weights.write_folder),
        }
        if self.name not in builders:
            raise SourceError(
                f"no built-in model named {self.name!r}",
                fix=f"use one of: {', '.join('builtin://' + n for n in builders)}",
            )
        dest = self.ctx.scratch / "build"
        if not dest.is_dir():
            tmp = self.ctx.scratch / "build.tmp"
            _rmtree(tmp)
            builders[self.name](self.name, tmp)
            tmp.rename(dest)
        self._built = dest
        files = []
        for path in sorted(p for p in dest.rglob("*") if p.is_file()):
            files.append(
                RemoteFile(
                    path=path.relative_to(dest).as_posix(),
                    size=path.stat().st_size,
                    sha256=sha256_file(path)[0],
                    ref=str(path),
                )
            )
        return files

    def fetch(self, file: RemoteFile, sink: FileSink) -> None:
        with Path(file.ref).open("rb") as fh:
            fh.seek(sink.offset)
            while chunk := fh.read(CHUNK_BYTES):
                sink.write(chunk)


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
