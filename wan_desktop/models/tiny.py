"""Tiny random-weight versions of the Wan2.2 models, built offline and deterministically.

Each has the real model's architecture at toy size: two experts with ``boundary_ratio`` for the
A14B models (I2V with 36 input channels), one transformer with the Wan2.2 VAE (z_dim 48, 16×
spatial compression) and ``expand_timesteps`` for TI2V-5B, a UMT5 text encoder and a tokenizer
trained here on a fixed corpus. They are saved with ``save_pretrained`` in diffusers layout,
sharded like the real repositories, so they exercise every code path real weights take.

Random weights produce noise. Everything that shows such a model labels it so.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import MissingDependencyError

SEED = 20250728
# Small enough to build in well under a second, big enough that components save as 2+ shards.
SHARD_SIZE = "48KB"
TEXT_DIM = 32
_SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2 as in T5
_N_SPECIAL = len(_SPECIAL_TOKENS)

_CORPUS = (
    "a red fox running through fresh snow at dawn",
    "a cat playing the piano in a sunlit room, cinematic lighting",
    "ocean waves crashing on black rocks at sunset, slow motion",
    "an astronaut riding a horse across the surface of the moon",
    "a city street at night in the rain with neon reflections",
    "a drone shot over a green forest and a winding river",
    "close up of a hummingbird drinking from a flower",
    "a steaming cup of coffee on a wooden table, morning light",
    "timelapse of clouds moving over snowy mountains",
    "a paper boat floating down a stream after the rain",
    "blurry, low quality, distorted, watermark, text, static, overexposed",
    "the camera slowly pans left; the subject turns and smiles",
)


def _require() -> Any:
    try:
        import torch
        from diffusers import (
            AutoencoderKLWan,
            UniPCMultistepScheduler,
            WanImageToVideoPipeline,
            WanPipeline,
            WanTransformer3DModel,
        )
        from tokenizers import (
            Tokenizer,
            decoders,
            models,
            normalizers,
            pre_tokenizers,
            processors,
            trainers,
        )
        from transformers import T5TokenizerFast, UMT5Config, UMT5EncoderModel
    except ImportError as exc:
        raise MissingDependencyError(
            f"building development models needs the engine packages ({exc.name} is missing)",
            fix="install them: pip install -e '.[engine]' (after torch==2.13.0 or a CUDA build)",
        ) from exc
    return {
        "torch": torch,
        "AutoencoderKLWan": AutoencoderKLWan,
        "UniPCMultistepScheduler": UniPCMultistepScheduler,
        "WanPipeline": WanPipeline,
        "WanImageToVideoPipeline": WanImageToVideoPipeline,
        "WanTransformer3DModel": WanTransformer3DModel,
        "Tokenizer": Tokenizer,
        "decoders": decoders,
        "models": models,
        "normalizers": normalizers,
        "pre_tokenizers": pre_tokenizers,
        "processors": processors,
        "trainers": trainers,
        "T5TokenizerFast": T5TokenizerFast,
        "UMT5Config": UMT5Config,
        "UMT5EncoderModel": UMT5EncoderModel,
    }


def _tokenizer(m: dict[str, Any]) -> Any:
    tok = m["Tokenizer"](m["models"].Unigram())
    tok.normalizer = m["normalizers"].NFKC()
    tok.pre_tokenizer = m["pre_tokenizers"].Metaspace()
    tok.decoder = m["decoders"].Metaspace()
    trainer = m["trainers"].UnigramTrainer(
        vocab_size=160,
        special_tokens=list(_SPECIAL_TOKENS),
        unk_token="<unk>",
        show_progress=False,
    )
    tok.train_from_iterator(list(_CORPUS) * 4, trainer)
    # Training runs in parallel: scores differ in the last bits and equal scores come in any order.
    # Rounding and sorting (special tokens keep their ids) make every build byte-identical.
    spec = json.loads(tok.to_str())
    vocab = [[piece, round(score, 6)] for piece, score in spec["model"]["vocab"]]
    special = vocab[:_N_SPECIAL]
    spec["model"]["vocab"] = special + sorted(vocab[_N_SPECIAL:], key=lambda v: (-v[1], v[0]))
    tok = m["Tokenizer"].from_str(json.dumps(spec))
    tok.post_processor = m["processors"].TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return m["T5TokenizerFast"](
        tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>", extra_ids=0
    )


def _text_encoder(m: dict[str, Any], vocab: int) -> Any:
    m["torch"].manual_seed(SEED)
    cfg = m["UMT5Config"](
        vocab_size=vocab,
        d_model=TEXT_DIM,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return m["UMT5EncoderModel"](cfg).eval()


def _transformer(m: dict[str, Any], *, seed: int, in_channels: int, out_channels: int) -> Any:
    m["torch"].manual_seed(seed)
    return m["WanTransformer3DModel"](
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=in_channels,
        out_channels=out_channels,
        text_dim=TEXT_DIM,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=1024,
    )


def _vae21(m: dict[str, Any]) -> Any:
    m["torch"].manual_seed(SEED)
    return m["AutoencoderKLWan"](
        base_dim=3,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )


def _vae22(m: dict[str, Any]) -> Any:
    m["torch"].manual_seed(SEED)
    return m["AutoencoderKLWan"](
        base_dim=3,
        z_dim=48,
        in_channels=12,
        out_channels=12,
        is_residual=True,
        patch_size=2,
        latents_mean=[0.0] * 48,
        latents_std=[1.0] * 48,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        scale_factor_spatial=16,
        scale_factor_temporal=4,
        temperal_downsample=[False, True, True],
    )


def _scheduler(m: dict[str, Any], flow_shift: float) -> Any:
    return m["UniPCMultistepScheduler"](
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=flow_shift,
        num_train_timesteps=1000,
    )


def build_t2v_a14b(m: dict[str, Any]) -> Any:
    tok = _tokenizer(m)
    return m["WanPipeline"](
        tokenizer=tok,
        text_encoder=_text_encoder(m, len(tok)),
        vae=_vae21(m),
        scheduler=_scheduler(m, 3.0),
        transformer=_transformer(m, seed=SEED + 1, in_channels=16, out_channels=16),
        transformer_2=_transformer(m, seed=SEED + 2, in_channels=16, out_channels=16),
        boundary_ratio=0.875,
    )


def build_i2v_a14b(m: dict[str, Any]) -> Any:
    tok = _tokenizer(m)
    return m["WanImageToVideoPipeline"](
        tokenizer=tok,
        text_encoder=_text_encoder(m, len(tok)),
        vae=_vae21(m),
        scheduler=_scheduler(m, 3.0),
        transformer=_transformer(m, seed=SEED + 1, in_channels=36, out_channels=16),
        transformer_2=_transformer(m, seed=SEED + 2, in_channels=36, out_channels=16),
        image_encoder=None,
        image_processor=None,
        boundary_ratio=0.9,
    )


def build_ti2v_5b(m: dict[str, Any]) -> Any:
    tok = _tokenizer(m)
    return m["WanPipeline"](
        tokenizer=tok,
        text_encoder=_text_encoder(m, len(tok)),
        vae=_vae22(m),
        scheduler=_scheduler(m, 5.0),
        transformer=_transformer(m, seed=SEED + 1, in_channels=48, out_channels=48),
        transformer_2=None,
        boundary_ratio=None,
        expand_timesteps=True,
    )


BUILDERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "tiny/t2v-A14B": build_t2v_a14b,
    "tiny/i2v-A14B": build_i2v_a14b,
    "tiny/ti2v-5B": build_ti2v_5b,
}


# Tiny LoRA packs (models.toml [loras]): one file per expert, named like the real packs' files.
LORA_BUILDERS = {
    "tiny-lora/t2v-A14B": 1,
    "tiny-lora/i2v-A14B": 2,
}
LORA_FILES = ("high_noise_model.safetensors", "low_noise_model.safetensors")
LORA_RANK = 4


def build_lora(name: str, dest: Path) -> None:
    """Two random rank-4 LoRAs for the tiny transformers' attention, in diffusers' key format
    (a change the output shows, like a real LoRA's)."""
    import torch
    from safetensors.torch import save_file

    dim = 2 * 12  # the tiny transformers: 2 heads of 12
    dest.mkdir(parents=True)
    for i, file in enumerate(LORA_FILES):
        gen = torch.Generator().manual_seed(SEED + 100 * LORA_BUILDERS[name] + i)
        tensors = {}
        for block in range(2):
            for attn in ("attn1", "attn2"):
                for proj in ("to_q", "to_k", "to_v", "to_out.0"):
                    key = f"transformer.blocks.{block}.{attn}.{proj}"
                    tensors[f"{key}.lora_A.weight"] = torch.randn(LORA_RANK, dim, generator=gen)
                    tensors[f"{key}.lora_B.weight"] = torch.randn(dim, LORA_RANK, generator=gen)
        save_file(tensors, str(dest / file))


def build(name: str, dest: Path) -> None:
    """Build the named tiny pipeline into ``dest`` (which must not exist yet)."""
    if name not in BUILDERS:
        raise KeyError(name)
    with quiet_libraries():
        m = _require()
        _build_quietly(name, dest, m)


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Keep the libraries' progress bars and notices out of our output while building."""
    try:
        from diffusers.utils import logging as dlogging
        from transformers.utils import logging as tlogging
    except ImportError:
        yield  # _require() names what is missing
        return
    levels = (tlogging.get_verbosity(), dlogging.get_verbosity())
    tlogging.set_verbosity_error()
    dlogging.set_verbosity_error()
    tlogging.disable_progress_bar()
    dlogging.disable_progress_bar()
    try:
        yield
    finally:
        tlogging.set_verbosity(levels[0])
        dlogging.set_verbosity(levels[1])
        tlogging.enable_progress_bar()
        dlogging.enable_progress_bar()


def _build_quietly(name: str, dest: Path, m: dict[str, Any]) -> None:
    torch = m["torch"]
    # Same bytes on every run: seeded weights, a fixed corpus, one thread for the init kernels.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            pipe = BUILDERS[name](m)
            pipe.save_pretrained(str(dest), safe_serialization=True, max_shard_size=SHARD_SIZE)
    finally:
        torch.set_num_threads(threads)
