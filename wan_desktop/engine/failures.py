"""Turn any exception out of a job into a category, a plain message and what to do next."""

from __future__ import annotations

import errno
import traceback

from .errors import JobFailedError
from .jobs import FailureCategory, JobFailure

OOM_SUGGESTIONS = (
    "lower the resolution or the number of frames",
    "close other programs that use the GPU",
    "let the planner offload more (Settings → memory strategy: automatic)",
    "use a smaller model (TI2V-5B) or a lower-precision variant",
)
CUDA_SUGGESTIONS = (
    "update the NVIDIA driver to one that supports this CUDA version",
    "restart the app: a CUDA error leaves the GPU context unusable",
    "check the GPU is not overheating or overclocked (nvidia-smi -q -d TEMPERATURE,CLOCK)",
    "if it repeats, run with WAN_DEVICE=cpu to confirm the model itself works",
)

STORAGE_FULL_SUGGESTIONS = (
    "free space on the disk of the outputs folder (delete old videos in the Gallery)",
    "or choose an outputs folder on a disk with room (Settings → folders, or WAN_OUTPUTS_DIR)",
    "then retry the job",
)


def is_storage_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "No space left on device" in str(exc)


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    name = type(exc).__name__
    text = str(exc).lower()
    return name == "OutOfMemoryError" or "out of memory" in text or "cuda oom" in text


def is_cuda_error(exc: BaseException) -> bool:
    text = str(exc)
    return any(
        s in text
        for s in ("CUDA error", "CUBLAS_STATUS", "cuDNN error", "device-side assert", "NCCL error")
    )


def classify(exc: BaseException, *, stage: str | None = None) -> JobFailure:
    detail = "".join(traceback.format_exception(exc)).strip()
    if isinstance(exc, JobFailedError):
        f = exc.failure
        return JobFailure(
            f.category,
            f.message,
            f.suggestions,
            code=f.code,
            stage=stage,
            detail=f.detail or detail,
        )
    if is_storage_full(exc):
        # No traceback in what the API shows: it would name install paths.
        return JobFailure(
            FailureCategory.storage_full,
            "the disk is full: the job's files could not be written",
            STORAGE_FULL_SUGGESTIONS,
            stage=stage,
            detail=f"{type(exc).__name__}: errno {getattr(exc, 'errno', None)} (no space left)",
        )
    if is_out_of_memory(exc):
        return JobFailure(
            FailureCategory.out_of_memory,
            "the GPU (or the computer) ran out of memory",
            OOM_SUGGESTIONS,
            stage=stage,
            detail=detail,
        )
    if is_cuda_error(exc):
        return JobFailure(
            FailureCategory.cuda_error,
            f"the GPU reported an error: {exc}",
            CUDA_SUGGESTIONS,
            stage=stage,
            detail=detail,
        )
    return JobFailure(
        FailureCategory.internal,
        f"unexpected error: {type(exc).__name__}: {exc}",
        ("retry the job", "if it fails again, send the job's log with a bug report"),
        stage=stage,
        detail=detail,
    )
