"""The generation libraries (torch, diffusers, transformers), imported once, in one place.

diffusers builds its namespace lazily: a thread that imports it while another thread's first
import of it is half done can find names missing (``cannot import name 'DiffusionPipeline'``).
So every first use goes through :func:`load`: one thread imports, every other caller waits for
it, later calls return at once. The desktop app calls it ahead of time after its first paint;
the engine's worker calls it before a job touches a model.
"""

from __future__ import annotations

import logging
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


class _NoImageProcessorFallbackNote(logging.Filter):
    """transformers warns, when diffusers' image-to-video pipeline module names
    ``CLIPImageProcessor`` without torchvision installed, that it falls back to the PIL class.
    No Wan2.2 model of ours has an image encoder (I2V-A14B and TI2V-5B condition on VAE latents),
    so nothing ever uses that processor: the note would only puzzle whoever reads the output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed)" not in record.getMessage()


def _import() -> dict[str, str]:
    logging.getLogger("transformers.utils.import_utils").addFilter(_NoImageProcessorFallbackNote())
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
