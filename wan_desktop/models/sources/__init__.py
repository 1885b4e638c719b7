"""Sources a model's files can come from, tried in the manifest's order."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping

from ..errors import SourceAttempt, SourceError
from .base import CancelToken, FileSink, RangedSource, RemoteFile, Source, SourceContext

__all__ = [
    "CancelToken",
    "FileSink",
    "RangedSource",
    "RemoteFile",
    "Source",
    "SourceContext",
    "SourceNotConfiguredError",
    "configured",
    "expand_uri",
    "open_source",
    "register_scheme",
    "source_kind",
]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

SourceFactory = Callable[[str, SourceContext], Source]
_FACTORIES: dict[str, SourceFactory] = {}


# What each kind of source is called in messages.
_KINDS = {
    "local": "local mirror",
    "s3": "S3 bucket",
    "hf": "Hugging Face Hub",
    "http": "web server",
    "https": "web server",
    "builtin": "built on this machine",
}


def source_kind(uri: str) -> str:
    """The kind of source a manifest URI names, as a person reads it ("local mirror")."""
    scheme = uri.partition("://")[0]
    return _KINDS.get(scheme, f"{scheme}:// source")


class SourceNotConfiguredError(SourceError):
    """The source needs a setting (an environment variable) that is not set: skip it quietly.

    Its text names the kind of source and the setting ("local mirror: not set
    (WAN_LOCAL_MIRROR)"), never the manifest's template.
    """

    def __init__(self, kind: str, variable: str) -> None:
        super().__init__(
            f"{kind}: not set ({variable})",
            fix=f"set {variable} to use the {kind}",
            details={"source": kind, "variable": variable},
        )
        self.kind = kind
        self.variable = variable

    def attempt(self) -> SourceAttempt:
        return SourceAttempt(self.kind, self.code, f"not set ({self.variable})", configured=False)


def configured(
    uris: Iterable[str], *, model_dir: str, attempts: list[SourceAttempt]
) -> Iterator[tuple[str, str]]:
    """The manifest's sources in order, as ``(uri, shown)``: the URI with its settings filled
    in, and the same without a query (what logs and messages show). A source whose setting is
    not set is recorded in ``attempts`` and passed over; the caller records the rest."""
    for uri in uris:
        try:
            expanded = expand_uri(uri, model_dir=model_dir)
        except SourceNotConfiguredError as exc:
            attempts.append(exc.attempt())
            continue
        yield expanded, expanded.split("?", 1)[0]


def register_scheme(scheme: str, factory: SourceFactory) -> None:
    _FACTORIES[scheme] = factory


def expand_uri(uri: str, *, model_dir: str, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ

    def sub(m: re.Match[str]) -> str:
        value = env.get(m.group(1), "").strip()
        if not value:
            raise SourceNotConfiguredError(source_kind(uri), m.group(1))
        return value.rstrip("/")

    return _VAR.sub(sub, uri).replace("{model_dir}", model_dir)


def _builtin_factories() -> None:
    # Each module is light; boto3 and keyring are imported only when a source first needs them.
    from .builtin import BuiltinSource
    from .hf import HfSource
    from .local import LocalSource
    from .s3 import S3Source
    from .web import WebSource

    _FACTORIES.setdefault("local", LocalSource)
    _FACTORIES.setdefault("builtin", BuiltinSource)
    _FACTORIES.setdefault("hf", HfSource)
    _FACTORIES.setdefault("s3", S3Source)
    _FACTORIES.setdefault("https", WebSource)
    _FACTORIES.setdefault("http", WebSource)


def open_source(uri: str, ctx: SourceContext) -> Source:
    _builtin_factories()
    scheme = uri.partition("://")[0]
    factory = _FACTORIES.get(scheme)
    if factory is None:
        raise SourceError(
            f"{scheme}:// sources are not available in this installation",
            fix="install the remote extra: pip install -e '.[remote]'",
        )
    return factory(uri, ctx)
