"""The generation libraries (torch, diffusers, transformers), imported once, in one place.

diffusers builds its namespace lazily: a thread that imports it while another thread's first
import of it is half done can find names missing (``cannot import name 'DiffusionPipeline'``).
So every first use goes through :func:`load`: one thread imports, every other caller waits for
it, later calls return at once. The desktop app calls it ahead of time after its first paint;
the engine's worker calls it before a job touches a model.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_versions: dict[str, str] = {}  # filled by the first load that succeeds


def load() -> dict[str, str]:
    """Import what generation needs (blocking; once per process) and return the versions.

    Raises the ImportError of a missing library; a later call tries again.
    """
    with _lock:
        if not _versions:
            _versions.update(_import())
        return dict(_versions)


def _import() -> dict[str, str]:
    import diffusers
    import torch
    import transformers
    from diffusers import (
        AutoencoderKLWan,
        DiffusionPipeline,
        WanImageToVideoPipeline,
        WanPipeline,
        WanTransformer3DModel,
    )
    from transformers import UMT5EncoderModel

    del AutoencoderKLWan, DiffusionPipeline, WanImageToVideoPipeline, WanPipeline
    del WanTransformer3DModel, UMT5EncoderModel
    x = torch.ones(2, 2) @ torch.ones(2, 2)  # the native library runs, not just imports
    assert float(x.sum()) == 8.0
    return {
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
    }
