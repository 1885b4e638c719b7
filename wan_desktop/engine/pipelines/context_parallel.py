"""One Wan job on several GPUs: diffusers' context parallelism (Ulysses), wrapped in one place.

Every rank (one process per GPU, same seed) runs the whole pipeline; inside each transformer the
sequence of video tokens is split across the ranks and attention heads are exchanged all-to-all,
so the denoised latents are the ones one GPU would make. Ulysses keeps a full copy of the weights
on every GPU: it buys speed, not memory. diffusers marks the feature experimental, so its calls
live here only, against the pinned diffusers version.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import JobFailedError
from ..jobs import FailureCategory
from ..model_facts import facts_for
from ..params import WanParams, degree_problem

if TYPE_CHECKING:
    from wan_desktop.models.manifest import ModelSpec

# A rank whose partner died waits in a collective at most this long, then fails its job.
GROUP_TIMEOUT_S = 120.0


def check(p: WanParams, spec: ModelSpec, folder: Path) -> None:
    """Refuse a job this process cannot split: not in a group of ``p.gpus`` ranks (a pool
    runs it), or a degree that does not divide this variant's heads and tokens."""
    if group_size() != p.gpus:
        raise JobFailedError(
            FailureCategory.invalid_input,
            f"this job asks for {p.gpus} GPUs; it runs on a GPU pool (wan serve --pool)",
            ("submit it with gpus 1", "submit it to a server started with --pool"),
        )
    heads = facts_for(spec, folder).num_heads  # from the transformer's config on disk
    problem = degree_problem(heads, p.width, p.height, p.frames, spec, p.gpus)
    if problem:
        raise JobFailedError(FailureCategory.invalid_input, problem, ("submit it with gpus 1",))


@contextlib.contextmanager
def process_group(rank: int, world: int, address: str) -> Iterator[None]:
    """This process as ``rank`` of ``world`` (gloo on the CPU, NCCL between GPUs)."""
    import torch
    import torch.distributed as dist

    gpu = torch.cuda.is_available() and dist.is_nccl_available()
    dist.init_process_group(
        backend="cpu:gloo,cuda:nccl" if gpu else "gloo",
        init_method=f"tcp://{address}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=GROUP_TIMEOUT_S),
    )
    try:
        yield
    finally:
        dist.destroy_process_group()


def group_size() -> int:
    """Ranks of this process's group; 1 when it is in none."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def enable(pipe: Any, degree: int) -> str:
    """Split every transformer of ``pipe`` (both A14B experts) across ``degree`` ranks; says so
    (for the job's log)."""
    for name in ("transformer", "transformer_2"):
        model = getattr(pipe, name, None)
        if model is not None:
            enable_model(model, degree)
    return f"split across {degree} GPUs: Ulysses context parallelism of degree {degree}"


def enable_model(model: Any, degree: int) -> None:
    """Split one transformer across ``degree`` ranks (once: a split model stays split)."""
    import torch
    from diffusers import ContextParallelConfig

    if getattr(model, "_parallel_config", None) is not None:
        return
    config = ContextParallelConfig(ulysses_degree=degree)
    if torch.accelerator.device_count() > 0:
        model.enable_parallelism(config=config)
        return
    # With no accelerator diffusers computes ``rank % torch.accelerator.device_count()`` (0)
    # while it builds the device mesh; on the CPU every rank has one device, its own.
    count = torch.accelerator.device_count
    torch.accelerator.device_count = lambda: 1
    try:
        model.enable_parallelism(config=config)
    finally:
        torch.accelerator.device_count = count
