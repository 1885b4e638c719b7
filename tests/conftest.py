from __future__ import annotations

import gc
import os
import shutil
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.helpers import REAL_MANIFEST, make_store
from wan_desktop.models.store import ModelStore

_ISOLATED_ENV = (
    "MODELS_ROOT",
    "WAN_MODELS_MANIFEST",
    "WAN_DEV_MODE",
    "WAN_LOCAL_MIRROR",
    "WAN_S3_BUCKET",
    "WAN_QUOTA",
    "WAN_MANIFEST_PUBLIC_KEY",
    "WAN_PARTS_PER_FILE",
    "WAN_PART_SIZE",
    "WAN_STALL_TIMEOUT",
    "HF_TOKEN",
    "HF_ENDPOINT",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
)


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None]:
    """After a test with Qt widgets (and its fixtures' teardown), collect on the main thread.

    A widget left in a reference cycle must not wait for the next collection: a later test's
    engine thread would run it, and Qt crashes when a widget is destroyed off its thread (the app
    itself routes every collection to the GUI thread, see ``wan_desktop.ui.collector``).
    """
    yield
    if "qtbot" in getattr(item, "fixturenames", ()):
        gc.collect()


@pytest.fixture(autouse=True)
def _isolated_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No test reads the developer's models folder, settings, keyring, tokens or mode."""
    for name in _ISOLATED_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("WAN_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


@pytest.fixture(scope="session")
def tiny_models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding the three tiny variants, built once per test session."""
    root = tmp_path_factory.mktemp("tiny-models")
    store = make_store(root, REAL_MANIFEST, dev_mode=True)
    for model in ("t2v-A14B@2.2.0", "i2v-A14B@2.2.0", "ti2v-5B@2.2.0"):
        store.ensure(model)
    return root


@pytest.fixture
def tiny_store(tiny_models_root: Path, tmp_path: Path) -> Iterator[ModelStore]:
    """A private copy of the tiny models (tests may damage it)."""
    root = tmp_path / "models"
    shutil.copytree(tiny_models_root, root, symlinks=True)
    yield make_store(root, REAL_MANIFEST, dev_mode=True)
