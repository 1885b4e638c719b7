"""One explainer job's working state, handed from stage to stage of the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wan_desktop.models.cancel import CancelToken

from .llm import ChatClient
from .params import ExplainerParams
from .plan import Writer
from .rag import NotesIndex
from .sandbox import SceneSandbox
from .tasks import Sink

if TYPE_CHECKING:
    from wan_desktop.engine.context import JobContext


@dataclass
class Run:
    """One job's working state."""

    ctx: JobContext
    params: ExplainerParams
    writer: Writer
    sandbox: SceneSandbox
    workdir: Path
    cancel: CancelToken  # a child of the job's token: stops the stage's other work on an error
    sink: Sink
    notes: NotesIndex | None
    client: ChatClient | None = None
    stage_log: list[dict[str, Any]] = field(default_factory=list)
