"""Turn any exception out of a job into a category, a plain message and what to do next."""

from __future__ import annotations

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
