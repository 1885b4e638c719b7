"""Models: every manifest model and variant, what is on disk, downloads with progress, upkeep."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Slot
from PySide6.QtGui import QDesktopServices, QFont
from PySide6.QtWidgets import QHBoxLayout, QProgressBar, QVBoxLayout, QWidget

from wan_desktop.engine import ModelDownloadFinished
from wan_desktop.engine.model_catalog import ModelRow
from wan_desktop.models import (
    DownloadProgress,
    ModelError,
    ModelState,
    ModelUsage,
    VerifyReport,
)

from .. import format as fmt
from .. import widgets
from ..state import Notice, Studio
from ..widgets import (
    Badge,
    Card,
    Divider,
    PageHeader,
    button,
    clear_layout,
    label,
    page_layout,
    scroll_page,
    set_prop,
)

STATE_BADGE = {
    ModelState.complete: ("Ready", "success"),
    ModelState.partial: ("Partial", "warning"),
    ModelState.corrupt: ("Damaged", "danger"),
    ModelState.not_present: ("Not downloaded", "neutral"),
}
PHASE_TEXT = {
    "waiting_for_lock": "waiting for another download of this model",
    "planning": "listing files",
    "downloading": "downloading",
    "verifying": "verifying",
    "finalizing": "installing",
    "complete": "done",
}


def failure(what: str, exc: BaseException) -> Notice:
    """A command on a model failed: what happened, and the orchestrator's fix when it has one."""
    fix = exc.fix if isinstance(exc, ModelError) else None
    return Notice("error", f"{what} failed", str(exc), (fix,) if fix else (), sticky=True)


class VariantRow(QWidget):
    """One variant: state, size, source, and what can be done with it."""

    def __init__(self, studio: Studio, row: ModelRow) -> None:
        super().__init__()
        self.studio = studio
        self.row = row
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 4, 0, 4)
        col.setSpacing(6)
        top = QHBoxLayout()
        top.setSpacing(10)
        name = label(row.variant.name)
        f = name.font()
        f.setWeight(QFont.Weight.DemiBold)
        name.setFont(f)
        top.addWidget(name)
        self.state = Badge()
        top.addWidget(self.state)
        if row.variant.development:
            top.addWidget(Badge("random weights: output is noise", "dev"))

        self.pin_badge = Badge("pinned", "accent")
        top.addWidget(self.pin_badge)
        self.use_badge = Badge("", "info")
        top.addWidget(self.use_badge)
        top.addStretch(1)
        self.size_label = label("", "muted")
        top.addWidget(self.size_label)
        col.addLayout(top)
        self.info = label("", "faint", wrap=True)
        col.addWidget(self.info)

        prog = QHBoxLayout()
        prog.setSpacing(10)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        prog.addWidget(self.bar, 1)
        self.progress_text = label("", "muted")
        prog.addWidget(self.progress_text)
        prog.setContentsMargins(0, 0, 0, 0)
        self.progress_box = QWidget()
        self.progress_box.setLayout(prog)
        col.addWidget(self.progress_box)

        actions = QHBoxLayout()
        actions.setSpacing(6)
        self.download_btn = button("Download", "download", variant="primary")
        self.cancel_btn = button("Cancel", "cancel")
        self.verify_btn = button("Verify", "verify", variant="ghost")
        self.delete_btn = button("Delete", "delete", variant="ghost")
        self.pin_btn = button("Pin", "pin", variant="ghost")
        self.folder_btn = button("Open folder", "folder", variant="ghost")
        for b in (
            self.download_btn,
            self.cancel_btn,
            self.verify_btn,
            self.pin_btn,
            self.folder_btn,
            self.delete_btn,
        ):
            actions.addWidget(b)
        actions.addStretch(1)
        col.addLayout(actions)
        self.download_btn.clicked.connect(self.download)
        self.cancel_btn.clicked.connect(self.cancel)
        self.verify_btn.clicked.connect(self.verify)
        self.delete_btn.clicked.connect(self.delete)
        self.pin_btn.clicked.connect(self.toggle_pin)
        self.folder_btn.clicked.connect(
            lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.row.status.path)))
        )
        self.busy = ""
        self.set_row(row)

    @property
    def key(self) -> tuple[str, str]:
        return self.row.key

    def status_state(self) -> ModelState:
        return self.row.status.state

    def set_row(self, row: ModelRow) -> None:
        self.row = row
        st = row.status
        text, kind = STATE_BADGE[st.state]
        if st.state is ModelState.not_present and row.built_here:
            text = "Not built yet"
        self.state.set(text, kind)
        self.size_label.setText(
            fmt.size(row.disk_bytes) + " on disk"
            if st.complete
            else row.to_get_text()
            + (f" ({fmt.size(row.disk_bytes)} here)" if st.bytes_present else "")
        )
        bits = [row.variant.description or row.variant.label, row.variant.dtype]
        mirror = self.studio.engine.models_view.local_mirror
        if st.source:
            bits.append(f"from {source_name(st.source, mirror)}")
        elif row.variant.sources:
            names = (source_name(s, mirror) for s in row.variant.sources)
            bits.append("sources: " + " → ".join(names))
        downloading = self.key in self.studio.downloads
        if st.state not in (ModelState.complete, ModelState.not_present) and not downloading:
            bits.append(st.reason)
        self.info.setText("  ·  ".join(b for b in bits if b))
        self.pin_badge.setVisible(row.pinned)
        self.pin_badge.setToolTip("Kept whatever clean-up or the quota decide")
        self.use_badge.set(row.in_use_text(), "info")
        self.use_badge.setToolTip("Clean-up and the quota never remove a model in use")
        self._update_buttons()

    def _update_buttons(self) -> None:
        st = self.row.status
        downloading = self.key in self.studio.downloads or self.busy == "download"
        word = {
            ModelState.partial: "Resume",
            ModelState.corrupt: "Repair",
        }.get(st.state, "Build" if self.row.built_here else "Download")
        self.download_btn.setText(word)
        self.download_btn.setVisible(not st.complete and not downloading)
        self.cancel_btn.setVisible(downloading)
        self.verify_btn.setVisible(st.complete or st.state is ModelState.corrupt)
        self.verify_btn.setEnabled(not self.busy)
        self.delete_btn.setVisible(st.state is not ModelState.not_present and not downloading)
        self.delete_btn.setEnabled(not self.busy and not self.row.in_use)
        self.delete_btn.setToolTip(
            "Unload it or let its job finish first" if self.row.in_use else "Delete from disk"
        )
        self.folder_btn.setVisible(st.complete)
        self.pin_btn.setVisible(st.complete)
        self.pin_btn.setEnabled(not self.busy)
        self.pin_btn.setText("Unpin" if self.row.pinned else "Pin")
        self.pin_btn.setToolTip(
            "Let clean-up and the quota remove it again"
            if self.row.pinned
            else "Keep it whatever clean-up or the quota decide"
        )
        self.progress_box.setVisible(downloading or self.busy == "verify")
        if self.busy == "verify":
            self.bar.setRange(0, 0)
            self.progress_text.setText("verifying every file…")

    def show_progress(self, p: DownloadProgress) -> None:
        self.bar.setRange(0, 1000)
        frac = p.fraction
        if frac is None:
            self.bar.setRange(0, 0)
        else:
            self.bar.setValue(int(frac * 1000))
        phase = PHASE_TEXT.get(str(p.phase), str(p.phase))
        if self.row.built_here and phase == "downloading":
            phase = "building"
        parts = [phase]
        if p.bytes_total:
            parts.append(f"{fmt.size(p.bytes_done)} of {fmt.size(p.bytes_total)}")
        if p.speed_bps:
            parts.append(fmt.speed(p.speed_bps))
        if p.eta_s is not None:
            parts.append(f"{fmt.duration(p.eta_s)} left")
        self.progress_text.setText("  ·  ".join(parts))
        word = "Building" if self.row.built_here else "Downloading"
        self.state.set(f"{word} {frac * 100:.0f}%" if frac is not None else word, "accent")
        self.progress_box.setVisible(True)
        self.busy = "download"
        self._update_buttons()

    def finished(self, event: ModelDownloadFinished) -> None:
        self.busy = ""
        self.set_row(self.row)  # the badge again says what is on disk until the rescan lands

    # ----------------------------------------------------------------------------- actions

    def download(self) -> None:
        engine = self.studio.engine
        self.busy = "download"
        self.bar.setRange(0, 0)
        self.progress_text.setText("starting…")
        self._update_buttons()
        future = engine.ensure_model(self.row.spec.id, self.row.variant.name)
        self.studio.background.watch(future, on_error=self._download_failed)

    def _download_failed(self, exc: BaseException) -> None:
        self.busy = ""
        self._update_buttons()

    def cancel(self) -> None:
        self.studio.engine.cancel_download(self.row.spec.id, self.row.variant.name)

    def verify(self) -> None:
        self.busy = "verify"
        self._update_buttons()
        store = self.studio.engine.models_view
        self.studio.background.run(
            store.verify,
            self.row.spec.id,
            self.row.variant.name,
            on_done=self._verified,
            on_error=self._failed("Verify"),
        )

    def _verified(self, report: VerifyReport) -> None:
        self.busy = ""
        self._update_buttons()
        if report.ok:
            self.studio.post(Notice("success", "Verified", verified_text(report)))
        else:
            bad = len(report.mismatches) + len(report.missing)
            self.studio.post(
                Notice(
                    "error",
                    "Verification failed",
                    f"{report.model_id} ({report.variant}): {bad} file(s) damaged or missing",
                    ("click Repair to fetch only the damaged files",),
                    sticky=True,
                )
            )
        self.studio.models_changed.emit()

    def delete(self) -> None:
        size = fmt.size(self.row.disk_bytes)
        again = "built" if self.row.built_here else "downloaded"
        if not widgets.confirm(
            self,
            "Delete model",
            f"Delete {self.row.spec.model_type} ({self.row.variant.name}, {size})? "
            f"It will have to be {again} again.",
            "Delete",
        ):
            return
        self.busy = "delete"
        self._update_buttons()
        self.studio.background.run(
            self.studio.engine.models_view.delete,
            self.row.spec.id,
            self.row.variant.name,
            # The folder's size as the page showed it (the store counts model files only).
            on_done=lambda _files: self._deleted(self.row.disk_bytes),
            on_error=self._failed("Delete"),
        )

    def _deleted(self, freed: int) -> None:
        self.busy = ""
        self._update_buttons()
        self.studio.post(Notice("info", "Model deleted", f"{fmt.size(freed)} freed"))
        self.studio.models_changed.emit()

    def toggle_pin(self) -> None:
        store = self.studio.engine.models_view
        want = not self.row.pinned
        model, variant = self.row.spec.id, self.row.variant.name
        self.busy = "pin"
        self._update_buttons()

        def pinned(_changed: bool) -> None:
            self.busy = ""
            self.row = dataclasses.replace(self.row, pinned=want)  # until the rescan lands
            self.set_row(self.row)
            self.studio.models_changed.emit()

        self.studio.background.run(
            lambda: store.pin(model, variant, pinned=want),
            on_done=pinned,
            on_error=self._failed("Unpin" if self.row.pinned else "Pin"),
        )

    def _failed(self, what: str) -> Callable[[BaseException], None]:
        def on_error(exc: BaseException) -> None:
            self.busy = ""
            self._update_buttons()
            self.studio.post(failure(what, exc))
            self.studio.models_changed.emit()

        return on_error


class PartialRow(QWidget):
    """A download left half done in the staging folder: its size, and resume or discard it."""

    def __init__(self, studio: Studio, usage: ModelUsage) -> None:
        super().__init__()
        self.studio = studio
        self.usage = usage
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 2, 0, 2)
        row.setSpacing(8)
        text = QVBoxLayout()
        text.setSpacing(2)
        self.title = label(f"{usage.model_id} ({usage.variant or '?'})")
        text.addWidget(self.title)
        self.info = label("", "faint", wrap=True)
        text.addWidget(self.info)
        row.addLayout(text, 1)
        self.resume_btn = button("Resume", "download", variant="ghost")
        self.discard_btn = button("Discard", "delete", variant="ghost")
        row.addWidget(self.resume_btn, 0, Qt.AlignmentFlag.AlignTop)
        row.addWidget(self.discard_btn, 0, Qt.AlignmentFlag.AlignTop)
        self.resume_btn.clicked.connect(self.resume)
        self.discard_btn.clicked.connect(self.discard)
        self.busy = False
        self.set_usage(usage)

    def set_usage(self, usage: ModelUsage) -> None:
        self.usage = usage
        s = self.studio
        bits = [f"{fmt.size(usage.bytes)} downloaded"]
        if usage.last_used:
            bits.append(f"last written {fmt.ago(usage.last_used)}")
        why_not = ""
        if usage.downloading or (usage.model_id, usage.variant or "") in s.downloads:
            why_not = "downloading now"
        elif not usage.known or usage.variant is None:
            why_not = "no longer in the model list (models.toml): it can only be discarded"
        elif s.dev_mode:
            why_not = "development mode is on: turn it off to resume this download"
        if why_not:
            bits.append(why_not)
        self.info.setText("  ·  ".join(bits))
        self.resume_btn.setEnabled(not why_not and not self.busy)
        self.resume_btn.setToolTip(why_not or "Download the rest (what is here is kept)")
        self.discard_btn.setEnabled(not usage.downloading and not self.busy)
        self.discard_btn.setToolTip(
            "Cancel the download first" if usage.downloading else "Delete what was downloaded"
        )

    def resume(self) -> None:
        u = self.usage
        self.busy = True
        self.set_usage(u)
        future = self.studio.engine.ensure_model(u.model_id, u.variant)
        self.studio.background.watch(future, on_error=lambda _e: self._done())
        self.studio.refresh_catalog()  # the variant's row shows the progress

    def discard(self) -> None:
        u = self.usage
        if not widgets.confirm(
            self,
            "Discard partial download",
            f"Delete the {fmt.size(u.bytes)} downloaded so far of {u.model_id} "
            f"({u.variant or '?'})? A later download starts from the beginning.",
            "Discard",
        ):
            return
        self.busy = True
        self.set_usage(u)
        self.studio.background.run(
            self.studio.engine.models_view.discard_partial,
            u.dir_name,
            on_done=self._discarded,
            on_error=self._failed,
        )

    def _discarded(self, freed: int) -> None:
        self._done()
        self.studio.post(Notice("info", "Partial download discarded", f"{fmt.size(freed)} freed"))

    def _failed(self, exc: BaseException) -> None:
        self._done()
        self.studio.post(failure("Discard", exc))

    def _done(self) -> None:
        self.busy = False
        self.set_usage(self.usage)
        self.studio.models_changed.emit()


class ModelsPanel(QWidget):
    def __init__(self, studio: Studio) -> None:
        super().__init__()
        self.studio = studio
        self.rows: dict[tuple[str, str], VariantRow] = {}
        outer = page_layout(self)
        self.header = PageHeader("Models", "")
        refresh = button("Refresh", "refresh", variant="ghost")
        refresh.clicked.connect(studio.refresh_catalog)
        self.header.action_row.addWidget(refresh)
        outer.addWidget(self.header)

        body = QWidget()
        self.col = QVBoxLayout(body)
        self.col.setContentsMargins(0, 0, 8, 0)
        self.col.setSpacing(14)
        self.disk = Card("Disk", margins=16)
        self.cleanup_btn = button("Clean up…", "delete", variant="ghost")
        self.cleanup_btn.setToolTip("Preview what the quota and max age would remove, then do it")
        self.cleanup_btn.clicked.connect(self.clean_up)
        self.quota_btn = button("Change quota…", "settings", variant="ghost")
        self.quota_btn.clicked.connect(lambda: studio.navigate.emit("settings"))
        if self.disk.header is not None:
            self.disk.header.addWidget(self.quota_btn)
            self.disk.header.addWidget(self.cleanup_btn)
        self.disk_bar = QProgressBar()
        self.disk_bar.setRange(0, 1000)
        self.disk_text = label("", "muted", wrap=True)
        self.disk.body.addWidget(self.disk_text)
        self.disk.body.addWidget(self.disk_bar)
        # Downloads left half done (cancelled, failed, or of a variant not shown now).
        self.partials_title = label("PARTIAL DOWNLOADS", "section")
        self.disk.body.addWidget(self.partials_title)
        self.partials_box = QVBoxLayout()
        self.partials_box.setSpacing(4)
        self.disk.body.addLayout(self.partials_box)
        self.partials: dict[str, PartialRow] = {}
        self.col.addWidget(self.disk)
        self.cards = QVBoxLayout()
        self.cards.setSpacing(14)
        self.col.addLayout(self.cards)
        self.col.addStretch(1)
        self.scroller = scroll_page(body)
        outer.addWidget(self.scroller, 1)
        self.loading = label("Reading the models folder…", "muted")
        self.cards.addWidget(self.loading)

        studio.catalog_changed.connect(self.rebuild)
        studio.download_changed.connect(self._on_progress)
        studio.download_finished.connect(self._on_finished)
        studio.dev_mode_changed.connect(lambda _on: studio.refresh_catalog())
        self._reveal: tuple[str, str] | None = None
        self.rebuild()

    def open_target(self, target: str) -> None:
        """Scroll to a variant (navigation to ``models:<model id>:<variant>``)."""
        model, _, variant = target.partition(":")
        if variant:
            self.reveal((model, variant))

    def reveal(self, key: tuple[str, str]) -> None:
        """Scroll to a variant's row (now, or when the catalog has it)."""
        row = self.rows.get(key)
        if row is None:
            self._reveal = key
            return
        self._reveal = None
        self.scroller.ensureWidgetVisible(row, 0, 120)

    @Slot()
    def rebuild(self) -> None:
        s = self.studio
        if not s.catalog_loaded:
            return
        keys = [r.key for r in s.catalog]
        if keys == list(self.rows):
            for r in s.catalog:
                self.rows[r.key].set_row(r)
        else:
            clear_layout(self.cards)
            self.rows.clear()
            by_model: dict[str, list[ModelRow]] = {}
            for r in s.catalog:
                by_model.setdefault(r.spec.id, []).append(r)
            for rows in by_model.values():
                spec = rows[0].spec
                card = Card(margins=18)
                head = QHBoxLayout()
                title = label(spec.title, "h2")
                head.addWidget(title)
                head.addWidget(Badge(spec.model_type, "accent"))
                head.addStretch(1)
                head.addWidget(label(spec.id, "faint"))
                card.body.addLayout(head)
                card.body.addWidget(label(spec.description, "muted", wrap=True))
                for i, r in enumerate(rows):
                    card.body.addWidget(Divider())
                    vr = VariantRow(s, r)
                    self.rows[r.key] = vr
                    card.body.addWidget(vr)
                    del i
                self.cards.addWidget(card)
        for key, p in s.downloads.items():
            if key in self.rows:
                self.rows[key].show_progress(p)
        self._update_disk()
        if self._reveal is not None:
            self.reveal(self._reveal)

    def _update_disk(self) -> None:
        s = self.studio
        mode = "development mode: tiny variants only" if s.dev_mode else ""
        self.header.subtitle.setText(
            f"{len(s.catalog)} variants  ·  {sum(r.status.complete for r in s.catalog)} ready"
            + (f"  ·  {mode}" if mode else "")
        )
        disk = s.disk
        if disk is None:
            return
        used, quota = disk.total_bytes, disk.quota_bytes
        limit = quota or (used + disk.free_bytes)
        self.disk_bar.setValue(int(1000 * min(1.0, used / max(1, limit))))
        set_prop(self.disk_bar, "kind", "warning" if quota and used > 0.9 * quota else "")
        if quota:
            share = f"Models use {fmt.size(used)} of the {fmt.size(quota)} quota"
        else:
            share = f"Models use {fmt.size(used)}  ·  no quota (set one in Settings)"
        bits = [share, f"{fmt.size(disk.free_bytes)} free on this disk"]
        for fam, limit_b in sorted(disk.family_quota_bytes.items()):
            bits.append(f"{fam}: {fmt.size(disk.family_bytes.get(fam, 0))} of {fmt.size(limit_b)}")
        pinned = sum(m.pinned for m in disk.models)
        in_use = sum(bool(m.in_use_by) for m in disk.models)
        if pinned:
            bits.append(f"{pinned} pinned")
        if in_use:
            bits.append(f"{in_use} in use")
        self.disk_text.setText(f"{disk.models_root}\n" + "  ·  ".join(bits))
        self.cleanup_btn.setEnabled(bool(disk.models))
        self._update_partials([m for m in disk.models if not m.complete])

    def _update_partials(self, partials: list[ModelUsage]) -> None:
        names = [m.dir_name for m in partials]
        if names != list(self.partials):
            clear_layout(self.partials_box)
            self.partials = {m.dir_name: PartialRow(self.studio, m) for m in partials}
            for row in self.partials.values():
                self.partials_box.addWidget(row)
        else:
            for m in partials:
                self.partials[m.dir_name].set_usage(m)
        self.partials_title.setVisible(bool(partials))

    def clean_up(self) -> None:
        from ..cleanup import CleanupDialog

        CleanupDialog(self.studio, self).exec()

    @Slot(object)
    def _on_progress(self, p: DownloadProgress) -> None:
        row = self.rows.get((p.model_id, p.variant))
        if row is not None:
            row.show_progress(p)

    @Slot(object)
    def _on_finished(self, event: ModelDownloadFinished) -> None:
        row = self.rows.get((event.model_id, event.variant))
        if row is not None:
            row.finished(event)


NBSP = "\u00a0"  # a number and its unit never wrap apart in a narrow toast


def verified_text(report: VerifyReport) -> str:
    """What a verify checked, and how fast when that was measurable (never "0.0 s" or a rate
    of 0): "t2v-A14B@2.2.0 (tiny): 12 files, 445 KiB checked in 1.2 s (371 KiB/s)"."""
    files = len(report.checked)
    text = (
        f"{report.model_id} ({report.variant}): {files} file{'s' if files != 1 else ''}, "
        f"{fmt.size(report.bytes_hashed).replace(' ', NBSP)} checked"
    )
    if report.seconds >= 0.05:
        text += f" in {report.seconds:.1f}{NBSP}s"
        rate = fmt.speed(report.bytes_hashed / report.seconds)
        if rate:
            text += f" ({rate.replace(' ', NBSP)})"
    return text


def source_name(uri: str, mirror: Path | None = None) -> str:
    """A source as a person reads it: local mirror, S3, Hugging Face repo, built here."""
    scheme, _, rest = uri.partition("://")
    if scheme == "local":
        if "${" in rest or (mirror is not None and Path(rest).is_relative_to(mirror)):
            return "local mirror (WAN_LOCAL_MIRROR)" if mirror is not None else "local mirror"
        return f"local folder {rest}"
    if scheme == "s3":
        return "S3"
    if scheme == "hf":
        return f"Hugging Face {rest.split('@')[0]}"
    if scheme == "builtin":
        return "built on this machine"
    return uri


__all__ = ["ModelsPanel", "Qt"]
