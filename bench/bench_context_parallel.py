"""One job on several GPUs: seconds per denoising step, Ulysses degree N vs 1 (for a GPU machine).

    .venv/bin/python bench/bench_context_parallel.py --gpus 2            # on a machine with 2+ GPUs
    .venv/bin/python bench/bench_context_parallel.py --gpus 2 --tiny     # anywhere (gloo on CPU)

One A14B expert at full size (40 layers, 40 heads x 128, ffn 13824: 14.3 B parameters) with
random bf16 weights, a 832x480, 81-frame job (21 x 30 x 52 latents: 32 760 video tokens) and a
512-token prompt: each step is two transformer passes (guidance). Degree 1 runs in one process on
GPU 0; degree N in N processes, one per GPU, through the project's context-parallel module
(``engine/pipelines/context_parallel.py``), as a pool's multi-GPU job does. Each process keeps a
full copy of the weights (≈ 29 GB). Prints the median s/step of each and the speed-up; the outputs
of the two runs are compared (max difference, as a check that the split computes the same thing).
``--tiny`` uses the tiny development shapes on the CPU, to check the script itself.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FULL = {
    "num_attention_heads": 40,
    "attention_head_dim": 128,
    "ffn_dim": 13824,
    "num_layers": 40,
    "text_dim": 4096,
    "size": (832, 480, 81),
}
TINY = {
    "num_attention_heads": 2,
    "attention_head_dim": 12,
    "ffn_dim": 32,
    "num_layers": 2,
    "text_dim": 32,
    "size": (96, 64, 9),
}


def build(shape: dict[str, Any], device: Any, dtype: Any) -> Any:
    import torch
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    with torch.device("meta"):
        model = WanTransformer3DModel(
            patch_size=(1, 2, 2),
            num_attention_heads=shape["num_attention_heads"],
            attention_head_dim=shape["attention_head_dim"],
            in_channels=16,
            out_channels=16,
            text_dim=shape["text_dim"],
            freq_dim=256,
            ffn_dim=shape["ffn_dim"],
            num_layers=shape["num_layers"],
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            rope_max_seq_len=1024,
        )
    # Weights made in place, on the device, each in its own dtype (the modules diffusers keeps
    # in float32 stay so): the same random values in every process, no 57 GB float32 detour.
    keep = tuple(model._keep_in_fp32_modules or ())
    gen = torch.Generator(device=device).manual_seed(0)
    for name, module in model.named_modules():
        fp32 = any(k in name.split(".") for k in keep)
        for pname, p in list(module.named_parameters(recurse=False)):
            value = torch.randn(
                p.shape, generator=gen, device=device, dtype=torch.float32 if fp32 else dtype
            )
            module._parameters[pname] = torch.nn.Parameter(value * 0.02, requires_grad=False)
        for bname, b in list(module.named_buffers(recurse=False)):
            # Built on meta, the rope tables hold no values: zeros time the same.
            module._buffers[bname] = torch.zeros(b.shape, device=device, dtype=b.dtype)
    return model.eval()


def inputs(shape: dict[str, Any], device: Any, dtype: Any) -> dict[str, Any]:
    import torch

    w, h, frames = shape["size"]
    gen = torch.Generator(device="cpu").manual_seed(1)
    latents = torch.randn(1, 16, (frames - 1) // 4 + 1, h // 8, w // 8, generator=gen)
    text = torch.randn(1, 512, shape["text_dim"], generator=gen)
    return {
        "hidden_states": latents.to(device, dtype),
        "encoder_hidden_states": text.to(device, dtype),
        "timestep": torch.tensor([500], device=device),
        "return_dict": False,
    }


def measure(rank: int, world: int, args: argparse.Namespace, port: int, out: Any) -> None:
    import torch

    from wan_desktop.engine.pipelines import context_parallel

    shape = TINY if args.tiny else FULL
    device = torch.device("cpu") if args.tiny else torch.device("cuda", rank)
    dtype = torch.float32 if args.tiny else torch.bfloat16
    if not args.tiny:
        torch.cuda.set_device(device)
    group = (
        context_parallel.process_group(rank, world, f"127.0.0.1:{port}")
        if world > 1
        else contextlib.nullcontext()
    )
    with group:
        model = build(shape, device, dtype)
        if world > 1:
            context_parallel.enable_model(model, world)
        kwargs = inputs(shape, device, dtype)
        times = []
        with torch.no_grad():
            for _ in range(args.warmup + args.steps):
                if not args.tiny:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                result = None
                for _ in range(2):  # guidance: a conditional and an unconditional pass
                    result = model(**kwargs)[0]
                if not args.tiny:
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
        if rank == 0:
            assert result is not None
            # As numpy: a torch tensor would travel by a file descriptor of a finished process.
            out.put((statistics.median(times[args.warmup :]), result.float().cpu().numpy()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(world: int, args: argparse.Namespace) -> tuple[float, Any]:
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    out = ctx.SimpleQueue()
    port = free_port()
    procs = [ctx.Process(target=measure, args=(r, world, args, port, out)) for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode:
            raise SystemExit(f"a rank of the degree-{world} run failed (exit {p.exitcode})")
    result: tuple[float, Any] = out.get()
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gpus", type=int, default=2, help="Ulysses degree to compare with 1")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--tiny", action="store_true", help="tiny shapes on the CPU (gloo)")
    args = ap.parse_args()
    if not args.tiny:
        import torch

        if torch.cuda.device_count() < args.gpus:
            print(f"needs {args.gpus} GPUs, sees {torch.cuda.device_count()}", file=sys.stderr)
            return 2
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    one, ref = run(1, args)
    many, split = run(args.gpus, args)
    diff = float(abs(ref - split).max())
    what = "tiny shapes, CPU" if args.tiny else "A14B expert, 832x480x81, bf16"
    print(
        f"{what}: degree 1 {one:.3f} s/step, degree {args.gpus} {many:.3f} s/step: "
        f"{one / many:.2f}x; max difference of the outputs {diff:.3g}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
