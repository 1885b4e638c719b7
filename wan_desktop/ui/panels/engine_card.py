"""Settings → Engine: drive this computer's engine, or a ``wan serve`` on another machine.

The address is remembered in the app's settings and the token in the OS keyring. "Test" checks
the server as connecting would; "Use" switches the app to it at once (no restart).
"""

from __future__ import annotations

import dataclasses

from PySide6.QtWidgets import QButtonGroup, QHBoxLayout, QLineEdit, QRadioButton

from wan_desktop.engine.face import THIS_COMPUTER
from wan_desktop.remote import RemoteError, probe
from wan_desktop.remote.http import normalise_url

from .. import secrets
from ..engines import EngineChoice
from ..state import Notice, Studio
from ..widgets import Badge, Card, Field, button, label


class EngineCard(Card):
    def __init__(self, studio: Studio) -> None:
        super().__init__("Engine")
        self.studio = studio
        self.now = Badge()
        if self.header is not None:
            self.header.addWidget(self.now)
        self.body.addWidget(
            label(
                "Generate on this computer, or on a GPU server running `wan serve` (every page "
                "works the same; images and LoRAs picked here are uploaded, videos come back "
                "into a local cache).",
                "muted",
                wrap=True,
            )
        )
        row = QHBoxLayout()
        self.local = QRadioButton("This computer")
        self.server = QRadioButton("A server")
        self.choice = QButtonGroup(self)
        for b in (self.local, self.server):
            self.choice.addButton(b)
            row.addWidget(b)
        row.addStretch(1)
        self.body.addLayout(row)
        self.address = QLineEdit()
        self.address.setPlaceholderText("http://gpu-box:8000")
        self.address_field = Field("Server address", self.address)
        self.body.addWidget(self.address_field)
        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText("the access token `wan serve` printed")
        self.token_field = Field(
            "Access token", self.token, hint="Kept in the OS keyring, never in the settings file."
        )
        self.body.addWidget(self.token_field)
        buttons = QHBoxLayout()
        self.test_btn = button("Test", "refresh", tooltip="Check the server as connecting would")
        self.use_btn = button("Use", "play", variant="primary")
        buttons.addWidget(self.test_btn)
        buttons.addWidget(self.use_btn)
        buttons.addStretch(1)
        self.body.addLayout(buttons)
        self.result = label("", wrap=True)
        self.body.addWidget(self.result)

        url = studio.settings.engine_url
        (self.server if url else self.local).setChecked(True)
        self.address.setText(url)
        self.choice.buttonToggled.connect(lambda *_a: self._update())
        self.test_btn.clicked.connect(self.test)
        self.use_btn.clicked.connect(self.use)
        studio.link_changed.connect(lambda _e: self._on_link())
        self._show_now()
        self._update()
        studio.background.run(
            secrets.get,
            secrets.Secret.server_token,
            on_done=self._saved,
            on_error=self._no_keyring,
        )

    def _no_keyring(self, exc: BaseException) -> None:
        # The keyring library's own advice is long: the field says what it means here, the
        # tooltip keeps the details.
        self.token_field.hint.setText(
            "No OS keyring on this computer: the token is kept until you quit; to keep it, set "
            f"{secrets.ENV_FALLBACK[secrets.Secret.server_token]}."
        )
        self.token_field.hint.setToolTip(str(exc))

    def _saved(self, token: str | None) -> None:
        if token and not self.token.text():
            self.token.setText(token)

    def _on_link(self) -> None:
        self._show_now()
        self._update()

    def _show_now(self) -> None:
        text, kind = self.studio.engine_status()
        self.now.set(text.removeprefix("Engine: "), kind)

    def _update(self) -> None:
        remote = self.server.isChecked()
        self.address_field.setEnabled(remote)
        self.token_field.setEnabled(remote)
        self.test_btn.setEnabled(remote)
        self.use_btn.setText("Connect" if remote else "Use this computer")
        # Nothing to switch to when the app already runs on this computer.
        self.use_btn.setEnabled(remote or self.studio.engine.info.location != THIS_COMPUTER)

    def wanted(self) -> EngineChoice:
        """What the form asks for; RemoteError for an unusable address."""
        if not self.server.isChecked():
            return EngineChoice()
        return EngineChoice(normalise_url(self.address.text()), self.token.text().strip() or None)

    def _checked(self) -> EngineChoice | None:
        """What the form asks for, or None with the address's problem shown at the field."""
        self.address_field.set_error(None)
        try:
            return self.wanted()
        except RemoteError as exc:
            self.address_field.set_error(str(exc))
            return None

    def test(self) -> None:
        choice = self._checked()
        if choice is None:
            return
        self.result.setText("Testing…")
        self.test_btn.setEnabled(False)
        self.studio.background.run(
            probe, choice.url, choice.token, on_done=self._tested, on_error=self._test_failed
        )

    def _tested(self, summary: str) -> None:
        self.test_btn.setEnabled(True)
        self.result.setProperty("role", "muted")
        self.result.setText(f"OK: {summary}")

    def _test_failed(self, exc: BaseException) -> None:
        self.test_btn.setEnabled(True)
        self.result.setProperty("role", "error")
        self.result.setText(str(exc) if isinstance(exc, RemoteError) else f"Failed: {exc}")

    def use(self) -> None:
        """Remember the choice and switch the app to it."""
        choice = self._checked()
        if choice is None:
            return
        s = self.studio
        s.save_settings(dataclasses.replace(s.settings, engine_url=choice.url))
        if choice.remote:
            s.background.run(
                secrets.set_secret,
                secrets.Secret.server_token,
                choice.token,
                on_error=lambda exc: s.post(
                    Notice("warning", "Token not saved", str(exc), ("it is used until you quit",))
                ),
            )
        self.result.setText(f"Switching to {choice.describe()}…")
        s.engine_requested.emit(choice)
