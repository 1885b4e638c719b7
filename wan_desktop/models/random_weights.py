"""Full-size random-weight versions of the Wan2.2 models: real memory and speed, no download.

The ``random`` variant of each model has the real configs at full size (two 14.29 B experts for
the A14B models, the 5.0 B transformer and the Wan2.2 VAE for TI2V-5B, the 5.68 B UMT5-XXL text
encoder). On disk it is only a folder of configs (a few kilobytes, built here like the tiny
variants, with a ``transformer/random_weights.json`` marker). The weights are made when the
model loads: each component is constructed with its parameters on the ``meta`` device (no
memory), then every parameter is created directly on the target device in the target dtype and
initialised there.
Nothing is downloaded and a 28 GB model never passes through the CPU when it goes to a GPU.

The tokenizer is the tiny variants' (trained here): the real one is a download, and its token
ids all fall inside the full-size vocabulary. Random weights produce noise; everything that
shows such a model labels it so.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import MissingDependencyError

# Inside transformer/, which every model's allow_patterns keeps (the folder's root is filtered).
MARKER = "transformer/random_weights.json"
SEED = 20250729
NOISE_BLOCK = 1 << 22  # random values drawn per component, laid along every weight

# The published configs of the diffusers repositories (Wan-AI/Wan2.2-*-Diffusers).
_A14B_TRANSFORMER: dict[str, Any] = {
    "patch_size": [1, 2, 2],
    "num_attention_heads": 40,
    "attention_head_dim": 128,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "ffn_dim": 13824,
    "num_layers": 40,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 1024,
}
_TI2V_TRANSFORMER = {
    **_A14B_TRANSFORMER,
    "num_attention_heads": 24,
    "in_channels": 48,
    "out_channels": 48,
    "ffn_dim": 14336,
    "num_layers": 30,
}
UMT5_XXL: dict[str, Any] = {
    "vocab_size": 256384,
    "d_model": 4096,
    "d_kv": 64,
    "d_ff": 10240,
    "num_layers": 24,
    "num_heads": 64,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "feed_forward_proj": "gated-gelu",
    "tie_word_embeddings": False,
    "pad_token_id": 0,
    "eos_token_id": 1,
    "decoder_start_token_id": 0,
}
_VAE21: dict[str, Any] = {}  # diffusers' defaults are the Wan2.1 VAE
_VAE22: dict[str, Any] = {
    "base_dim": 160,
    "decoder_base_dim": 256,
    "z_dim": 48,
    "in_channels": 12,
    "out_channels": 12,
    "is_residual": True,
    "patch_size": 2,
    "scale_factor_spatial": 16,
    "scale_factor_temporal": 4,
    "latents_mean": [0.0] * 48,
    "latents_std": [1.0] * 48,
}


@dataclass(frozen=True)
class RandomModel:
    pipeline: str
    transformer: Mapping[str, Any]
    vae: Mapping[str, Any]
    flow_shift: float
    two_experts: bool = True
    pipeline_config: Mapping[str, Any] = field(default_factory=dict)


MODELS: dict[str, RandomModel] = {
    "random/t2v-A14B": RandomModel(
        "WanPipeline", _A14B_TRANSFORMER, _VAE21, 3.0, pipeline_config={"boundary_ratio": 0.875}
    ),
    "random/i2v-A14B": RandomModel(
        "WanImageToVideoPipeline",
        {**_A14B_TRANSFORMER, "in_channels": 36},
        _VAE21,
        3.0,
        pipeline_config={"boundary_ratio": 0.9},
    ),
    "random/ti2v-5B": RandomModel(
        "WanPipeline",
        _TI2V_TRANSFORMER,
        _VAE22,
        5.0,
        two_experts=False,
        pipeline_config={"expand_timesteps": True},
    ),
}


def _require() -> Any:
    try:
        import diffusers
        import torch
        import transformers
    except ImportError as exc:
        raise MissingDependencyError(
            f"random-weight models need the engine packages ({exc.name} is missing)",
            fix="install them: pip install -e '.[engine]' (after torch==2.13.0 or a CUDA build)",
        ) from exc
    return torch, diffusers, transformers


# --------------------------------------------------------------------------- the folder


def write_folder(name: str, dest: Path) -> None:
    """Write the named model's configs, tokenizer and marker into ``dest`` (not existing yet)."""
    from . import tiny

    model = MODELS[name]
    torch, diffusers, transformers = _require()
    with tiny.quiet_libraries():
        text_encoder = _text_encoder(torch, transformers, transformers.UMT5Config(**UMT5_XXL))
        vae = _build(torch, diffusers.AutoencoderKLWan, **model.vae)
        experts = [
            _build(torch, diffusers.WanTransformer3DModel, **model.transformer)
            for _ in range(2 if model.two_experts else 1)
        ]
    tokenizer = tiny._tokenizer(tiny._require())
    scheduler = diffusers.UniPCMultistepScheduler(
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=model.flow_shift,
        num_train_timesteps=1000,
    )
    components: dict[str, Any] = {
        "tokenizer": tokenizer,
        "text_encoder": text_encoder,
        "vae": vae,
        "scheduler": scheduler,
        "transformer": experts[0],
        "transformer_2": experts[1] if model.two_experts else None,
    }
    if model.pipeline == "WanImageToVideoPipeline":
        components.update(image_encoder=None, image_processor=None)
    pipe = getattr(diffusers, model.pipeline)(**components, **model.pipeline_config)
    dest.mkdir(parents=True)
    pipe.save_config(str(dest))  # model_index.json: the same file a real download has
    text_encoder.config.save_pretrained(str(dest / "text_encoder"))
    tokenizer.save_pretrained(str(dest / "tokenizer"))
    scheduler.save_config(str(dest / "scheduler"))
    vae.save_config(str(dest / "vae"))
    for comp, module in zip(("transformer", "transformer_2"), experts, strict=False):
        module.save_config(str(dest / comp))
    marker = {"model": name, "seed": SEED, "label": "random weights, output is noise"}
    (dest / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def is_random(folder: Path) -> bool:
    return (folder / MARKER).is_file()


# ------------------------------------------------------------------------------ loading


def load_pipeline(
    folder: Path,
    dtype: Any,
    device: Any,
    *,
    num_layers: int | None = None,
) -> Any:
    """The folder's pipeline with random weights made on ``device``: transformers and text
    encoder in ``dtype``, the VAE in float32 (as real weights load).

    ``num_layers`` cuts the transformers and the text encoder to that many blocks, for tests
    only: the same construction and materialisation at a size a CPU test can hold.
    """
    torch, diffusers, transformers = _require()
    from . import tiny

    index = json.loads((folder / "model_index.json").read_text("utf-8"))
    seed = json.loads((folder / MARKER).read_text("utf-8")).get("seed", SEED)
    device = torch.device(device)
    depth = {} if num_layers is None else {"num_layers": num_layers}
    built: dict[str, Any] = {}
    with tiny.quiet_libraries():
        for i, comp in enumerate(("transformer", "transformer_2", "text_encoder", "vae")):
            if not (folder / comp / "config.json").is_file():
                continue
            if comp == "text_encoder":
                cfg = transformers.UMT5Config.from_pretrained(str(folder / comp))
                for key, value in depth.items():
                    setattr(cfg, key, value)
                module = _text_encoder(torch, transformers, cfg)
                module_dtype = dtype
                # transformers keeps these in float32 only for float16 (they overflow)
                keep = module._keep_in_fp32_modules if dtype == torch.float16 else ()
            elif comp == "vae":
                cfg = diffusers.AutoencoderKLWan.load_config(str(folder / comp))
                module = _build(torch, diffusers.AutoencoderKLWan.from_config, cfg)
                module_dtype, keep = torch.float32, ()
            else:
                cfg = {**diffusers.WanTransformer3DModel.load_config(str(folder / comp)), **depth}
                module = _build(torch, diffusers.WanTransformer3DModel.from_config, cfg)
                module_dtype = dtype
                keep = module._keep_in_fp32_modules or ()
            built[comp] = materialize(
                module, device=device, dtype=module_dtype, seed=seed + i, keep_fp32=keep
            )
        cls = getattr(diffusers, index["_class_name"])
        pipe = cls.from_pretrained(str(folder), **built)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@contextlib.contextmanager
def _on_meta(torch: Any) -> Iterator[None]:
    """Parameters are created on the meta device (no memory); buffers, which modules compute in
    their constructors (the rotary tables), are real and small."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False), torch.no_grad():
        yield


def _build(torch: Any, factory: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``factory(*args, **kwargs)`` with its parameters on the meta device."""
    with _on_meta(torch):
        return factory(*args, **kwargs)


def _text_encoder(torch: Any, transformers: Any, cfg: Any) -> Any:
    """UMT5's input embedding is its shared embedding, but each parameter registered on the meta
    device is a new one: tie them again (outside the meta context, which would untie them once
    more), or the model has an extra 1 B parameters (2 GB)."""
    module = _build(torch, transformers.UMT5EncoderModel, cfg)
    module.tie_weights()
    return module


def materialize(
    module: Any, *, device: Any, dtype: Any, seed: int, keep_fp32: Iterable[str] = ()
) -> Any:
    """Create every meta parameter of ``module`` on ``device`` in ``dtype`` and initialise it.

    Like ``to_empty`` followed by an init, but buffers keep the values their constructors
    computed, tied parameters stay tied, and the modules named in ``keep_fp32`` stay in
    float32 (as ``from_pretrained`` keeps a model's ``_keep_in_fp32_modules``).
    """
    import torch

    keep = set(keep_fp32)
    generator = torch.Generator(device=device).manual_seed(seed)
    noise = torch.empty(NOISE_BLOCK, device=device).uniform_(-1.0, 1.0, generator=generator)
    made: dict[int, Any] = {}
    with torch.no_grad():
        for mod_name, mod in module.named_modules():
            for p_name, param in list(mod._parameters.items()):
                if param is None:
                    continue
                if id(param) not in made:
                    full = f"{mod_name}.{p_name}".split(".")
                    want = torch.float32 if keep.intersection(full) else dtype
                    tensor = torch.empty(param.shape, dtype=want, device=device)
                    _init(tensor, p_name, noise, shift=7919 * len(made))
                    made[id(param)] = torch.nn.Parameter(tensor, requires_grad=False)
                mod._parameters[p_name] = made[id(param)]
            for b_name, buf in list(mod._buffers.items()):
                if buf is not None:
                    mod._buffers[b_name] = buf.to(device)
    return module.eval().requires_grad_(False)


def _init(tensor: Any, name: str, noise: Any, shift: int) -> None:
    """Weights with unit-variance outputs (uniform, std 1/sqrt(fan-in)), norm scales 1, biases
    0: activations stay finite through every block, so step times are those of real numbers.

    The values are a block of random numbers drawn once per component and laid along the
    tensor from a different offset for each: memory speed, where drawing 28 B numbers one by one
    takes minutes on a CPU.
    """
    if tensor.ndim < 2:
        tensor.fill_(1.0 if name == "weight" else 0.0)
        return
    flat, size = tensor.view(-1), noise.numel()
    done, pos = 0, shift % size
    while done < flat.numel():
        take = min(flat.numel() - done, size - pos)
        flat[done : done + take].copy_(noise[pos : pos + take])
        done, pos = done + take, 0
    flat.mul_((3 / max(1, tensor.numel() // tensor.shape[0])) ** 0.5)


def parameter_counts(name: str) -> dict[str, int]:
    """Parameters per component at full size, counted from the configs on the meta device."""
    torch, diffusers, transformers = _require()
    model = MODELS[name]
    modules = {
        "transformer": _build(torch, diffusers.WanTransformer3DModel, **model.transformer),
        "text_encoder": _text_encoder(torch, transformers, transformers.UMT5Config(**UMT5_XXL)),
        "vae": _build(torch, diffusers.AutoencoderKLWan, **model.vae),
    }
    counts = {comp: _count(m) for comp, m in modules.items()}
    if model.two_experts:
        counts["transformer_2"] = counts["transformer"]
    return counts


def _count(module: Any) -> int:
    return sum({id(p): p.numel() for p in module.parameters()}.values())
