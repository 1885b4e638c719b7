"""How ``wan models`` speaks: human lines or one JSON document, errors with their fix, the
progress bar on a terminal, and the exit codes.
"""

from __future__ import annotations

import json
import shutil
import sys
from typing import Any, TextIO

from .errors import ModelError
from .settings import format_size
from .types import DownloadProgress, Phase

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class Output:
    def __init__(
        self, *, json_mode: bool, stdout: TextIO | None = None, stderr: TextIO | None = None
    ) -> None:
        self.json_mode = json_mode
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr

    def doc(self, schema: str, **fields: Any) -> None:
        json.dump({"schema": schema, **fields}, self.stdout, indent=2, default=str)
        self.stdout.write("\n")

    def line(self, text: str = "") -> None:
        if not self.json_mode:
            self.stdout.write(text + "\n")

    def err(self, text: str) -> None:
        self.stderr.write(text + "\n")

    def error(self, exc: ModelError, code: int) -> int:
        if self.json_mode:
            self.doc("wan.error/1", ok=False, error=exc.to_dict())
        else:
            self.err(f"error [{exc.code}]: {exc.message}")
            if exc.fix:
                self.err(f"  fix: {exc.fix}")
        return code


class ProgressBar:
    """One self-rewriting line on a terminal."""

    WIDTH = 24

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.active = False

    def update(self, p: DownloadProgress) -> None:
        frac = p.fraction
        if p.phase is Phase.waiting:
            text = f"{p.model_id}: waiting for another process that is downloading it…"
        elif frac is None:
            text = f"{p.model_id}: {p.phase} {format_size(p.bytes_done)}"
        else:
            filled = int(frac * self.WIDTH)
            eta = "" if p.eta_s is None else f" ETA {int(p.eta_s) // 60}:{int(p.eta_s) % 60:02d}"
            text = (
                f"{p.model_id} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {frac:4.0%} "
                f"{format_size(p.bytes_done)}/{format_size(p.bytes_total)} "
                f"{format_size(p.speed_bps)}/s{eta} {p.files_done}/{p.files_total} files"
            )
        cols = shutil.get_terminal_size((100, 20)).columns
        self.stream.write("\r" + text[: cols - 1].ljust(cols - 1))
        self.stream.flush()
        self.active = True

    def finish(self) -> None:
        if self.active:
            self.stream.write("\n")
            self.stream.flush()
