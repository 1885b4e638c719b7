"""Settings: folders, memory, disk quota, the local API, and credentials in the OS keyring."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from wan_desktop.access import generate_token
from wan_desktop.engine.settings import ENV_DATA_DIR
from wan_desktop.models.config import ENV_QUOTA

from .. import quota, secrets
from ..api_control import ApiController
from ..config import PREVIEW_EVERY_MAX, AppSettings, env_overrides
from ..state import Notice, Studio
from ..widgets import (
    Badge,
    Card,
    Field,
    PageHeader,
    button,
    label,
    make_selectable,
    padded,
    page_layout,
    scroll_page,
    tool,
)
from .engine_card import EngineCard


def _folder_row(edit: QLineEdit, title: str, *, locked: bool = False) -> QHBoxLayout:
    row = QHBoxLayout()
    row.setSpacing(6)
    row.addWidget(edit, 1)
    browse = tool("folder", f"Choose the {title}")
    edit.setEnabled(not locked)
    browse.setEnabled(not locked)

    def choose() -> None:
        path = QFileDialog.getExistingDirectory(None, f"Choose the {title}", edit.text())
        if path:
            edit.setText(path)

    browse.clicked.connect(choose)
    row.addWidget(browse)
    return row


class SettingsPanel(QWidget):
    def __init__(self, studio: Studio, api: ApiController) -> None:
        super().__init__()
        self.studio = studio
        self.api = api
        self.keyring_ok = False
        outer = page_layout(self)
        header = PageHeader("Settings", f"Saved in {studio.settings_store.path}")
        make_selectable(header.subtitle)  # a path: worth copying
        self.save_btn = button("Save", "check", variant="primary")
        self.save_btn.clicked.connect(self.save)
        header.action_row.addWidget(self.save_btn)
        outer.addWidget(header)
        if studio.settings_store.load_error:
            outer.addWidget(label(studio.settings_store.load_error, "error", wrap=True))

        body = QWidget()
        col = QVBoxLayout(body)
        col.setContentsMargins(0, 0, 8, 0)
        col.setSpacing(14)

        self.engine_card = EngineCard(studio)
        col.addWidget(self.engine_card)
        storage = Card("Storage")
        info = studio.engine.info
        # Settings an environment variable decides are shown read-only, with the variable.
        self.env = env_overrides()
        self.models_dir = QLineEdit()
        self.models_dir.setPlaceholderText(str(info.models_root))
        self.models_field = Field(
            "Models folder",
            _folder_row(self.models_dir, "models folder", locked="models_dir" in self.env),
            hint=self._hint(
                "models_dir",
                "Where downloaded models live (tens of GB each). Applies after a restart.",
            ),
            trailing=self._env_badge("models_dir"),
        )
        storage.body.addWidget(self.models_field)
        self.outputs_dir = QLineEdit()
        self.outputs_dir.setPlaceholderText(str(info.outputs_dir))
        self.outputs_field = Field(
            "Outputs folder",
            _folder_row(self.outputs_dir, "outputs folder", locked="outputs_dir" in self.env),
            hint=self._hint(
                "outputs_dir",
                "Where videos, thumbnails and their settings go. Applies after a restart.",
            ),
            trailing=self._env_badge("outputs_dir"),
        )
        storage.body.addWidget(self.outputs_field)
        data_var = os.environ.get(ENV_DATA_DIR)
        self.data_dir = label(
            f"Job history, logs and uploads: {info.data_dir}"
            + (f"  ·  set by {ENV_DATA_DIR} in the environment" if data_var else ""),
            "faint",
            wrap=True,
        )
        make_selectable(self.data_dir)  # a path: worth copying
        storage.body.addWidget(self.data_dir)
        grid = QGridLayout()
        grid.setHorizontalSpacing(14)
        self.idle = padded(QDoubleSpinBox())
        self.idle.setRange(0, 24 * 60)
        self.idle.setDecimals(0)
        self.idle.setSuffix(" min")
        self.idle.setEnabled("idle_unload_min" not in self.env)
        self.idle_field = Field(
            "Unload an idle model after",
            self.idle,
            hint=self._hint("idle_unload_min", "0 keeps it loaded."),
            trailing=self._env_badge("idle_unload_min"),
        )
        grid.addWidget(self.idle_field, 0, 0)
        self.quota = padded(QDoubleSpinBox())
        self.quota.setRange(0, 100_000)
        self.quota.setDecimals(0)
        self.quota.setSuffix(" GiB")
        self.quota.setSpecialValueText("no quota")
        self.quota.setEnabled(False)  # until the orchestrator's settings file is read
        self.quota_field = Field(
            "Models disk quota",
            self.quota,
            hint="Before a download goes over it, the least recently used models are removed "
            "(never pinned ones, nor ones in use). Shared with `wan models gc`.",
        )
        self.saved_quota_gb: float | None = None
        grid.addWidget(self.quota_field, 0, 1)
        grid.setColumnStretch(0, 1)
        grid.setColumnStretch(1, 1)
        storage.body.addLayout(grid)
        self.dev_mode = QCheckBox(
            "Development mode: tiny random-weight models (output is noise, always labelled)"
        )
        storage.body.addWidget(self.dev_mode)
        self.dev_mode.setEnabled("dev_mode" not in self.env)
        self.dev_mode_note = label(self._hint("dev_mode", ""), "faint", wrap=True)
        self.dev_mode_note.setVisible("dev_mode" in self.env)
        storage.body.addWidget(self.dev_mode_note)
        self.notifications = QCheckBox("Notify me when a job finishes or fails")
        storage.body.addWidget(self.notifications)
        self.preview = padded(QSpinBox())
        self.preview.setRange(0, PREVIEW_EVERY_MAX)
        self.preview.setPrefix("every ")
        self.preview.setSuffix(" steps")
        self.preview.setSpecialValueText("off")
        self.preview_field = Field(
            "Live preview while generating",
            self.preview,
            hint=self._hint(
                "preview_every",
                "A rough picture of the frames from the latents, on the Generate page and in "
                "the Queue; costs a little time. Applies from the next model load.",
            ),
            trailing=self._env_badge("preview_every"),
        )
        self.preview.setEnabled("preview_every" not in self.env)
        storage.body.addWidget(self.preview_field)
        col.addWidget(storage)

        api_card = Card("Local API")
        self.api_state = Badge()
        if api_card.header is not None:
            api_card.header.addWidget(self.api_state)
        api_card.body.addWidget(
            label(
                "Serve the same engine over HTTP and WebSocket for scripts and the web UI. "
                "It listens on this computer only unless you change the address.",
                "muted",
                wrap=True,
            )
        )
        self.api_enabled = QCheckBox("Serve the local API")
        api_card.body.addWidget(self.api_enabled)
        agrid = QGridLayout()
        agrid.setHorizontalSpacing(14)
        self.api_host = QLineEdit()
        self.api_host_field = Field("Address", self.api_host)
        agrid.addWidget(self.api_host_field, 0, 0)
        self.api_port = padded(QSpinBox())
        self.api_port.setRange(1, 65535)
        self.api_port_field = Field("Port", self.api_port)
        agrid.addWidget(self.api_port_field, 0, 1)
        token_row = QHBoxLayout()
        token_row.setSpacing(6)
        self.api_token = QLineEdit()
        self.api_token.setEchoMode(QLineEdit.EchoMode.Password)
        token_row.addWidget(self.api_token, 1)
        show = tool("key", "Show or hide the token")
        show.clicked.connect(self._toggle_token)
        copy = tool("copy", "Copy the token")
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.api_token.text()))
        regen = tool("refresh", "Make a new token (clients must use the new one)")
        regen.clicked.connect(lambda: self.api_token.setText(generate_token()))
        for b in (show, copy, regen):
            token_row.addWidget(b)
        self.api_token_field = Field(
            "Access token",
            token_row,
            hint="Clients send it as 'Authorization: Bearer <token>'; required off loopback.",
        )
        agrid.addWidget(self.api_token_field, 1, 0, 1, 2)
        self.api_origins = QLineEdit()
        self.api_origins_field = Field(
            "Allowed web origins (CORS)", self.api_origins, hint="Comma-separated."
        )
        agrid.addWidget(self.api_origins_field, 2, 0, 1, 2)
        agrid.setColumnStretch(0, 2)
        agrid.setColumnStretch(1, 1)
        api_card.body.addLayout(agrid)
        col.addWidget(api_card)

        cred = Card("Credentials")
        self.keyring_note = label("Checking the OS keyring…", "muted", wrap=True)
        cred.body.addWidget(self.keyring_note)
        self.hf_token = QLineEdit()
        self.hf_token.setEchoMode(QLineEdit.EchoMode.Password)
        self.hf_token.setPlaceholderText("hf_…  (read access is enough)")
        self.hf_field = Field("Hugging Face token", self.hf_token)
        cred.body.addWidget(self.hf_field)
        s3 = QHBoxLayout()
        s3.setSpacing(14)
        self.s3_key = QLineEdit()
        self.s3_key.setPlaceholderText("access key id")
        self.s3_key_field = Field("S3 access key", self.s3_key)
        s3.addWidget(self.s3_key_field, 1)
        self.s3_secret = QLineEdit()
        self.s3_secret.setEchoMode(QLineEdit.EchoMode.Password)
        self.s3_secret.setPlaceholderText("secret access key")
        self.s3_secret_field = Field("S3 secret key", self.s3_secret)
        s3.addWidget(self.s3_secret_field, 1)
        cred.body.addLayout(s3)
        self._secret_edits = {
            secrets.Secret.hf_token: self.hf_token,
            secrets.Secret.s3_access_key: self.s3_key,
            secrets.Secret.s3_secret_key: self.s3_secret,
        }
        for edit in self._secret_edits.values():
            edit.setEnabled(False)
        col.addWidget(cred)
        col.addStretch(1)
        outer.addWidget(scroll_page(body), 1)

        self.load(studio.settings)
        # One source of truth: a setting changed elsewhere (the welcome card, the development
        # banner) shows here at once, and Save never writes back a stale value.
        studio.settings_changed.connect(self._follow)
        studio.dev_mode_changed.connect(lambda _on: self._follow(studio.settings))
        api.state_changed.connect(self._on_api_state)
        self._on_api_state(api.describe())
        studio.background.run(self._read_keyring, on_done=self._on_keyring)
        studio.background.run(
            studio.engine.models_view.saved_quota, on_done=self._on_quota, on_error=self._no_quota
        )

    def _hint(self, setting: str, hint: str) -> str:
        if setting not in self.env:
            return hint
        var, value = self.env[setting]
        return (
            f"Read-only here: {var}={value} is set in the environment, and it wins over this "
            f"setting. Unset {var} and restart the app to choose here."
        )

    def _env_badge(self, setting: str) -> Badge | None:
        if setting not in self.env:
            return None
        var, value = self.env[setting]
        badge = Badge(f"set by {var}", "warning")
        badge.setToolTip(f"{var}={value}")
        return badge

    # ------------------------------------------------------------------------------- form

    def load(self, s: AppSettings) -> None:
        self._fill(s)
        self.shown = self.collect()  # what the form shows, to tell the user's edits apart

    def _fill(self, s: AppSettings) -> None:
        self.models_dir.setText(s.models_dir or "")
        self.outputs_dir.setText(s.outputs_dir or "")
        self.idle.setValue(s.idle_unload_min)
        self.dev_mode.setChecked(s.dev_mode or self.studio.dev_mode)
        self.notifications.setChecked(s.notifications)
        self.preview.setValue(s.preview_every)
        self.api_enabled.setChecked(s.api_enabled)
        self.api_host.setText(s.api_host)
        self.api_port.setValue(s.api_port)
        self.api_token.setText(s.api_token)
        self.api_origins.setText(", ".join(s.api_origins))

    def collect(self) -> AppSettings:
        origins = tuple(o.strip() for o in self.api_origins.text().split(",") if o.strip())
        return dataclasses.replace(
            self.studio.settings,
            models_dir=self.models_dir.text().strip() or None,
            outputs_dir=self.outputs_dir.text().strip() or None,
            idle_unload_min=self.idle.value(),
            dev_mode=self.dev_mode.isChecked(),
            notifications=self.notifications.isChecked(),
            preview_every=self.preview.value(),
            api_enabled=self.api_enabled.isChecked(),
            api_host=self.api_host.text().strip(),
            api_port=self.api_port.value(),
            api_token=self.api_token.text().strip(),
            api_origins=origins,
        )

    @Slot(object)
    def _follow(self, new: AppSettings) -> None:
        """Show ``new``, keeping the edits the user has not saved yet."""
        form, shown = self.collect(), self.shown
        edits = {
            f.name: getattr(form, f.name)
            for f in dataclasses.fields(AppSettings)
            if getattr(form, f.name) != getattr(shown, f.name)
        }
        self.load(new)
        self._fill(dataclasses.replace(self.shown, **edits))

    def fields(self) -> dict[str, Field]:
        return {
            "models_dir": self.models_field,
            "outputs_dir": self.outputs_field,
            "idle_unload_min": self.idle_field,
            "preview_every": self.preview_field,
            "api_host": self.api_host_field,
            "api_port": self.api_port_field,
            "api_token": self.api_token_field,
            "api_origins": self.api_origins_field,
        }

    @Slot()
    def save(self) -> bool:
        new = self.collect()
        errors = new.validate()
        for key, field in self.fields().items():
            field.set_error(errors.get(key))
        if errors:
            return False
        old = self.studio.settings
        try:
            self.studio.save_settings(new)
        except (OSError, ValueError) as exc:
            self.studio.post(Notice("error", "Settings not saved", str(exc), sticky=True))
            return False
        self._save_quota()
        if new.dev_mode != self.studio.dev_mode:
            self.studio.set_dev_mode(new.dev_mode)
        api_keys = ("api_enabled", "api_host", "api_port", "api_token", "api_origins")
        if any(getattr(old, k) != getattr(new, k) for k in api_keys):
            self.api.apply(new)
        if self.keyring_ok:
            values = {k: e.text() for k, e in self._secret_edits.items()}
            self.studio.background.run(self._write_keyring, values, on_error=self._keyring_error)
        restart = old.models_dir != new.models_dir or old.outputs_dir != new.outputs_dir
        self.studio.post(
            Notice(
                "success",
                "Settings saved",
                "Folder changes apply after a restart." if restart else "",
            )
        )
        return True

    def _toggle_token(self) -> None:
        hidden = self.api_token.echoMode() == QLineEdit.EchoMode.Password
        self.api_token.setEchoMode(
            QLineEdit.EchoMode.Normal if hidden else QLineEdit.EchoMode.Password
        )

    @Slot(str)
    def _on_api_state(self, text: str) -> None:
        kind = "success" if self.api.running else ("danger" if self.api.error else "neutral")
        self.api_state.set(text, kind)
        installed = self.api.available
        self.api_enabled.setEnabled(installed)
        if not installed:
            self.api_enabled.setToolTip("This build has no local API module")

    # ---------------------------------------------------------------------------- keyring

    @staticmethod
    def _read_keyring() -> tuple[secrets.KeyringStatus, dict[secrets.Secret, str]]:
        status = secrets.status()
        values: dict[secrets.Secret, str] = {}
        if status.available:
            for s in secrets.Secret:
                values[s] = secrets.get(s) or ""
        return status, values

    def _on_keyring(self, result: Any) -> None:
        status, values = result
        self.keyring_ok = status.available
        self.keyring_note.setText(status.message)
        self.keyring_note.setProperty("role", "muted" if status.available else "error")
        self.keyring_note.style().polish(self.keyring_note)
        for key, edit in self._secret_edits.items():
            edit.setEnabled(status.available)
            edit.setText(values.get(key, ""))
            if not status.available:
                edit.setPlaceholderText("no keyring: set " + secrets.ENV_FALLBACK[key])

    @staticmethod
    def _write_keyring(values: dict[secrets.Secret, str]) -> None:
        for key, value in values.items():
            secrets.set_secret(key, value.strip() or None)

    # ------------------------------------------------------------------------------ quota

    def _on_quota(self, saved: int | None) -> None:
        models = self.studio.engine.models_view
        override = models.quota_override
        if override is not None:
            self.quota_field.hint.setText(
                f"Set by {ENV_QUOTA}={override} in the environment, which wins over this setting."
            )
            effective = models.quota_bytes
            self.quota.setValue(effective / quota.GIB if effective else 0)
            return
        self.quota.setValue(saved / quota.GIB if saved else 0)
        self.saved_quota_gb = self.quota.value() or None  # as shown: whole GB
        self.quota.setEnabled(True)

    def _no_quota(self, exc: BaseException) -> None:
        self.quota_field.set_error(f"cannot read the orchestrator's settings: {exc}")

    def _save_quota(self) -> None:
        wanted = self.quota.value() or None
        if not self.quota.isEnabled() or wanted == self.saved_quota_gb:
            return
        quota_bytes = int(wanted * quota.GIB) if wanted else None
        models = self.studio.engine.models_view

        def saved(_r: None) -> None:
            self.saved_quota_gb = wanted
            self.studio.models_changed.emit()  # the Models page shows the new limit

        self.studio.background.run(
            models.set_quota, quota_bytes, on_done=saved, on_error=self._quota_error
        )

    def _quota_error(self, exc: BaseException) -> None:
        self.studio.post(Notice("error", "Quota not saved", str(exc), sticky=True))

    def _keyring_error(self, exc: BaseException) -> None:
        self.studio.post(Notice("error", "Credentials not saved", str(exc), sticky=True))


__all__ = ["Qt", "SettingsPanel"]
