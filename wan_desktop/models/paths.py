"""The one place that builds model paths, and the rules a relative file path must follow.

Layout under ``MODELS_ROOT``::

    wan22/<name>@<version>            the default variant, complete and verified
    wan22/<name>@<version>+<variant>  any other variant
    .staging/<dir name>/              a download in progress (same filesystem, renamed into place)
    .locks/<dir name>.lock            the cross-process lock of one model
"""

from __future__ import annotations

import errno
import re
import sys
from pathlib import Path, PurePosixPath

from .errors import ModelError, NoSpaceError, PathInvalidError

FAMILY_DIR = "wan22"
STAGING_DIR = ".staging"
LOCKS_DIR = ".locks"
TRASH_DIR = ".trash"
COMPLETE_MARKER = ".wan-complete.json"
CORRUPT_MARKER = ".wan-corrupt.json"
IN_USE_DIR = ".in-use"
PINS_DIR = ".pins"
LAST_USED_FILE = "last-used.json"
LEASE_SUFFIX = ".lease"
# Linux, macOS and Windows all refuse a file name longer than this (bytes on Linux, UTF-16 units
# on Windows; the stricter count is used).
MAX_NAME_BYTES = 255

# Windows refuses these as a file or folder name, with or without an extension.
WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"COM{i}" for i in (*range(1, 10), "¹", "²", "³")}
    | {f"LPT{i}" for i in (*range(1, 10), "¹", "²", "³")}
)
_DRIVE = re.compile(r"^[A-Za-z]:")
_FORBIDDEN_CHARS = re.compile(r'[<>:"|?*\x00-\x1f]')
# Windows' classic MAX_PATH; longer paths need the LongPathsEnabled policy.
WINDOWS_MAX_PATH = 260


def model_dir_name(model_id: str, variant: str, default_variant: str) -> str:
    return model_id if variant == default_variant else f"{model_id}+{variant}"


class ModelPaths:
    """Resolves every path the orchestrator uses below one models root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def model_dir(self, model_id: str, variant: str, default_variant: str) -> Path:
        return self.root / FAMILY_DIR / model_dir_name(model_id, variant, default_variant)

    def staging_dir(self, dir_name: str) -> Path:
        return self.root / STAGING_DIR / dir_name

    def lock_file(self, dir_name: str) -> Path:
        return self.root / LOCKS_DIR / f"{dir_name}.lock"

    def trash_dir(self) -> Path:
        return self.root / TRASH_DIR

    def in_use_dir(self, dir_name: str) -> Path:
        return self.root / IN_USE_DIR / dir_name

    def family_dir(self) -> Path:
        return self.root / FAMILY_DIR

    def staging_root(self) -> Path:
        return self.root / STAGING_DIR

    def pin_file(self, dir_name: str) -> Path:
        return self.root / PINS_DIR / dir_name

    def last_used_file(self, dir_name: str) -> Path:
        return self.in_use_dir(dir_name) / LAST_USED_FILE

    def lease_file(self, dir_name: str, lease_id: str) -> Path:
        return self.in_use_dir(dir_name) / f"{lease_id}{LEASE_SUFFIX}"


def check_relative_path(path: str, *, where: str = "") -> PurePosixPath:
    """Validate a manifest or source file path and return it normalised.

    Paths use ``/``; they must stay inside the model folder and be valid on Windows, macOS and
    Linux alike, so a manifest that works on one works on all.
    """
    ctx = f" ({where})" if where else ""

    def bad(why: str, fix: str) -> PathInvalidError:
        return PathInvalidError(f"file path {path!r}{ctx} {why}", fix=fix, details={"path": path})

    if not path or not path.strip():
        raise bad("is empty", "give the file's path relative to the model folder")
    if "\\" in path:
        raise bad("uses a backslash", "write paths with forward slashes: 'vae/config.json'")
    if path.startswith("/") or _DRIVE.match(path):
        raise bad("is absolute", "write it relative to the model folder, e.g. 'vae/config.json'")
    parts = path.split("/")
    for part in parts:
        if part in ("", "."):
            raise bad("has an empty or '.' component", "remove doubled slashes and './'")
        if part == "..":
            raise bad("leaves the model folder with '..'", "remove '..' from the path")
        if _FORBIDDEN_CHARS.search(part):
            raise bad(
                'has a character Windows cannot store (<>:"|?* or a control character)',
                "rename the file without those characters",
            )
        if part != part.rstrip(" ."):
            raise bad("has a component ending in a space or dot", "rename it; Windows drops them")
        stem = part.split(".", 1)[0].upper()
        if stem in WINDOWS_RESERVED:
            raise bad(
                f"uses the Windows reserved name {stem!r}",
                "rename the file; Windows cannot create it even with an extension",
            )
    return PurePosixPath(*parts)


def check_no_case_collisions(paths: list[str], *, where: str = "") -> None:
    seen: dict[str, str] = {}
    for p in paths:
        key = p.casefold()
        if key in seen and seen[key] != p:
            raise PathInvalidError(
                f"file paths {seen[key]!r} and {p!r}{f' ({where})' if where else ''} differ only "
                "in case",
                fix="rename one; macOS and Windows store them as the same file",
                details={"paths": [seen[key], p]},
            )
        if key in seen:
            raise PathInvalidError(
                f"file path {p!r} is listed twice{f' ({where})' if where else ''}",
                fix="remove the duplicate entry",
                details={"path": p},
            )
        seen[key] = p


def safe_join(base: Path, relative: str) -> Path:
    """Join a checked relative path to ``base``; it can never point outside ``base``."""
    rel = check_relative_path(relative)
    joined = base.joinpath(*rel.parts)
    base_resolved = base.resolve()
    if not joined.resolve().is_relative_to(base_resolved):
        raise PathInvalidError(
            f"file path {relative!r} resolves outside {base}",
            fix="remove symbolic links that point outside the models folder",
        )
    return joined


def path_guidance(root: Path, relatives: list[str], *, platform: str = sys.platform) -> list[str]:
    """Every problem the model's files would meet under ``root`` on ``platform``, with the fix."""
    problems: list[str] = []
    longest = max(relatives, key=len, default="")
    windows = windows_path_guidance(root, longest, platform=platform)
    if windows:
        problems.append(windows)
    for rel in relatives:
        for part in rel.split("/"):
            if len(part.encode("utf-8")) > MAX_NAME_BYTES:
                problems.append(
                    f"the file name {part[:40]!r}… is longer than {MAX_NAME_BYTES} bytes, which "
                    "no common file system stores; rename it in the source"
                )
    if (
        platform.startswith("win")
        and _DRIVE.match(str(root)) is None
        and str(root).startswith("\\\\")
    ):
        problems.append(
            "the models folder is on a network share (UNC path): long-path support and file "
            "locks there depend on the server; prefer a local disk such as C:\\wan-models"
        )
    return problems


def windows_path_guidance(
    root: Path, longest_relative: str, *, platform: str = sys.platform
) -> str | None:
    """Advice when a model would exceed Windows' classic path limit under ``root``."""
    if not platform.startswith("win"):
        return None
    total = len(str(root)) + 1 + len(longest_relative)
    if total < WINDOWS_MAX_PATH:
        return None
    return (
        f"the longest model path would be {total} characters, over Windows' {WINDOWS_MAX_PATH}; "
        "enable long paths (Group Policy 'Enable Win32 long paths' or the registry value "
        "HKLM\\SYSTEM\\CurrentControlSet\\Control\\FileSystem\\LongPathsEnabled=1) or choose a "
        "shorter models folder such as C:\\wan-models"
    )


def storage_error(exc: OSError, root: Path) -> ModelError:
    """The orchestrator's coded error for a failed read or write under the models folder ``root``.

    A full disk is ``NO_SPACE``; a folder that cannot be written (read-only, no permission, a file
    where a folder should be) is ``PATH_INVALID``. Each says what to do instead of a traceback.
    """
    if isinstance(exc, ModelError):
        return exc
    where = Path(exc.filename) if exc.filename else root
    what = exc.strerror or type(exc).__name__
    details = {"path": str(where), "models_root": str(root), "errno": exc.errno}
    other_root = "set MODELS_ROOT (or --models-root) to a folder you can write"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpaceError(
            f"the disk of {root} is full: writing {where} failed ({what})",
            fix="free some space, run 'wan models gc', or set MODELS_ROOT to a larger disk; what "
            "was downloaded is kept and ensure resumes from there",
            details=details,
        )
    if where != root and not where.is_relative_to(root):
        # Not the models folder (a mirror's file, say): say what failed, blame nothing else.
        return PathInvalidError(
            f"{where}: {what}", fix="check that path and its permissions", details=details
        )
    if exc.errno == errno.EROFS:
        return PathInvalidError(
            f"the models folder {root} is on a read-only filesystem"
            + ("" if where == root else f" (writing {where} failed)"),
            fix=f"{other_root}, or mount this disk read-write",
            details=details,
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return PathInvalidError(
            f"no permission to write {where} in the models folder {root}",
            fix=f"{other_root}, or give your user write access to {root}",
            details=details,
        )
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        blocker = _first_file_on(where)
        if blocker is not None:
            return PathInvalidError(
                f"the models folder {root} cannot be used: {blocker} is a file, not a folder",
                fix=f"{other_root} (not under a file), or move {blocker} out of the way",
                details={**details, "file": str(blocker)},
            )
    return PathInvalidError(
        f"the models folder {root} cannot be used: {where}: {what}",
        fix=f"check that folder, or {other_root}",
        details=details,
    )


def _first_file_on(path: Path) -> Path | None:
    """The nearest of ``path`` and its parents that exists and is not a folder."""
    for p in (path, *path.parents):
        try:
            if p.exists():
                return None if p.is_dir() else p
        except OSError:
            continue
    return None
