"""``hf://org/repo@revision``: a model repository on the Hugging Face Hub (or a mirror of it).

The file list, sizes and LFS sha256 come from the Hub's API: the revision is resolved to a commit
once (``/api/models/{repo}/revision/{rev}``) and everything after uses that commit, so a branch
that moves mid-download cannot mix two versions. The tree (``/api/models/{repo}/tree/{sha}``) is
read page by page (``Link: rel="next"``). Bytes come from ``/{repo}/resolve/{sha}/{path}``
through the transfer engine (parallel ranges, resume across processes), not huggingface_hub.

The token is read from the OS keyring (service ``wan-desktop``, user ``huggingface``) first, then
``HF_TOKEN``. It is sent to the Hub's own origin only, never to the CDN it redirects to.
"""

from __future__ import annotations

import functools
import logging
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import AuthError, RateLimitError, SourceError
from ..logs import LOGGER_NAME
from ..redact import register_secret
from .base import RangedSource, RemoteFile
from .http import HttpClient
from .http_errors import HttpError, http_error_to_model_error

log = logging.getLogger(LOGGER_NAME)

KEYRING_SERVICE = "wan-desktop"
KEYRING_USER = "huggingface"
TOKEN_FIX = (
    "store a Hugging Face token with read access: `keyring set wan-desktop huggingface`, or set "
    "HF_TOKEN (create one at {endpoint}/settings/tokens)"
)


def parse_hf_uri(uri: str) -> tuple[str, str]:
    """``hf://org/repo@rev`` → (``org/repo``, ``rev``); the revision defaults to ``main``."""
    rest = uri.removeprefix("hf://").strip("/")
    repo, _, rev = rest.partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise SourceError(
            f"{uri} is not hf://org/repo[@revision]",
            fix="write the repository as on the Hub, e.g. hf://Wan-AI/Wan2.2-TI2V-5B-Diffusers@main",
        )
    return repo, rev or "main"


def hf_token(*, env_token: str | None, use_keyring: bool) -> str | None:
    """The Hub token: the OS keyring first, then the environment."""
    token: str | None = None
    if use_keyring:
        try:
            import keyring

            token = keyring.get_password(KEYRING_SERVICE, KEYRING_USER)
        except Exception:  # no backend, locked, no D-Bus: fall back to the environment
            token = None
    token = token or env_token
    register_secret(token)
    return token


@dataclass
class HfSource(RangedSource):
    scheme = "hf"
    _client: HttpClient | None = None
    _commit: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def repo(self) -> str:
        return parse_hf_uri(self.uri)[0]

    @property
    def revision(self) -> str:
        return parse_hf_uri(self.uri)[1]

    @property
    def endpoint(self) -> str:
        return self.ctx.config.hf.endpoint

    def client(self) -> HttpClient:
        with self._lock:
            if self._client is None:
                cfg = self.ctx.config
                token = hf_token(env_token=cfg.hf.token_env, use_keyring=cfg.hf.use_keyring)
                self._client = HttpClient.for_source(
                    cfg,
                    "hf",
                    auth_headers={"Authorization": f"Bearer {token}"} if token else None,
                    auth_origin=self.endpoint,
                )
            return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    # --------------------------------------------------------------------------- metadata

    def _api(self, path: str) -> str:
        return f"{self.endpoint}/api/models/{self.repo}/{path}"

    def map_error(self, exc: Exception, *, what: str) -> Exception:
        if not isinstance(exc, HttpError):
            return exc
        details = {"source": self.describe(), "status": exc.status}
        fix = TOKEN_FIX.format(endpoint=self.endpoint)
        if exc.status == 403 and exc.error_code == "GatedRepo":
            url = f"{self.endpoint}/{self.repo}"
            return AuthError(
                f"{self.repo} is a gated repository: its licence must be accepted first",
                fix=f"open {url} , accept the conditions with your account, then {fix}",
                details={**details, "accept_url": url},
            )
        if exc.status in (401, 403):
            hint = (
                "the token was refused"
                if exc.error_code == "InvalidCredentials"
                else "the repository does not exist, or it is private and needs a token"
            )
            return AuthError(
                f"the Hub refused access to {self.repo} ({what}): {hint} (HTTP {exc.status})",
                fix=fix,
                details=details,
            )
        if exc.status == 429:
            return RateLimitError(
                f"the Hub rate-limited the requests for {self.repo} ({what})",
                retry_after=exc.retry_after,
                fix="wait a few minutes (or log in: tokens get higher limits) and run ensure again",
                details=details,
            )
        if exc.status == 404 and exc.error_code == "RepoNotFound":
            return SourceError(
                f"the repository {self.repo} does not exist on {self.endpoint}",
                fix="check the repository's name in the manifest (hf://org/repo@revision, "
                "spelt as on the Hub)",
                details=details,
            )
        if exc.status == 404 and exc.error_code == "RevisionNotFound":
            return SourceError(
                f"the repository {self.repo} exists but has no revision {self.revision!r}",
                fix="check the @revision in models.toml (a branch, tag or commit)",
                details=details,
            )
        return http_error_to_model_error(exc, what=what, source=self.describe())

    def commit(self) -> str:
        if self._commit is None:
            if self.ctx.config.hf.offline:
                raise SourceError(
                    "the Hugging Face Hub is switched off (HF_HUB_OFFLINE=1)",
                    fix="unset HF_HUB_OFFLINE to download, or use a local:// mirror",
                )
            rev = urllib.parse.quote(self.revision, safe="")
            doc, _ = self.retrying(
                lambda: self.client().get_json(self._api(f"revision/{rev}")), "the revision"
            )
            sha = doc.get("sha") if isinstance(doc, dict) else None
            if not isinstance(sha, str) or not sha:
                raise SourceError(
                    f"the Hub's answer for {self.repo}@{self.revision} has no commit sha",
                    fix="check HF_ENDPOINT: it must point at a Hub-compatible server",
                )
            self._commit = sha
        return self._commit

    def list_files(self) -> list[RemoteFile]:
        sha = self.commit()
        url: str | None = self._api(f"tree/{sha}?recursive=true")
        files: list[RemoteFile] = []
        pages = 0
        while url is not None:
            doc, headers = self.retrying(
                functools.partial(self.client().get_json, url), "the file list"
            )
            pages += 1
            if not isinstance(doc, list):
                raise SourceError(
                    f"the Hub's file list for {self.repo} is not a list",
                    fix="check HF_ENDPOINT: it must point at a Hub-compatible server",
                )
            for entry in doc:
                if not isinstance(entry, dict) or entry.get("type") != "file":
                    continue
                lfs: dict[str, Any] = entry.get("lfs") or {}
                path = str(entry["path"])
                files.append(
                    RemoteFile(
                        path=path,
                        size=int(lfs.get("size") or entry.get("size") or 0),
                        sha256=str(lfs["oid"]) if lfs.get("oid") else None,
                        ref=(
                            f"{self.endpoint}/{self.repo}/resolve/{sha}/{urllib.parse.quote(path)}"
                        ),
                        git_sha1=None if lfs else entry.get("oid"),
                    )
                )
            url = _next_link(headers.get("link", ""))
            if pages > 10_000:
                raise SourceError("the Hub's file list does not end", fix="report this")
        log.info("%s@%s is commit %s: %d files", self.repo, self.revision, sha, len(files))
        return files

    def read_range(
        self, file: RemoteFile, start: int, end: int, write: Callable[[memoryview], None]
    ) -> int:
        return self.client().read_range(file.ref, start, end, write)


def _next_link(header: str) -> str | None:
    for part in header.split(","):
        if 'rel="next"' in part:
            start, end = part.find("<"), part.find(">")
            if 0 <= start < end:
                return part[start + 1 : end]
    return None
