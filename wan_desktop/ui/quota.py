"""The models-folder quota as the GUI shows it. It lives in the orchestrator's settings file
(``orchestrator.toml``), which every download and ``wan models gc`` read; the engine's models
view (``ModelsView.saved_quota`` / ``set_quota``) reads and writes it and applies it at once.
``WAN_QUOTA`` in the engine's environment wins over the file, and the GUI says so.
"""

from __future__ import annotations

GIB = 1024**3  # the quota field's unit: sizes read in binary units everywhere
