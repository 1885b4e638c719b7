"""Cheap previews: an RGB picture of the current latent without running the VAE decoder.

A linear map from latent channels to RGB is fitted once per loaded VAE, by encoding a handful of
smooth random colour fields and solving least squares between the (normalised) latents and the
pixels they came from. Applying it is one small matrix product per preview.
"""

from __future__ import annotations

from typing import Any

FIT_IMAGES = 8
FIT_SIZE = 64  # pixels; a multiple of every Wan VAE's compression
FIT_SEED = 0


class LatentPreview:
    def __init__(self, weight: Any, bias: Any, scale: int) -> None:
        self.weight = weight  # (channels, 3)
        self.bias = bias  # (3,)
        self.scale = scale  # pixels per latent cell

    @classmethod
    def fit(cls, vae: Any, scale: int) -> LatentPreview:
        """Fit the map for ``vae`` (on the CPU, where a freshly loaded VAE is)."""
        import torch
        from torch.nn import functional

        gen = torch.Generator().manual_seed(FIT_SEED)
        coarse = torch.rand(FIT_IMAGES, 3, 4, 4, generator=gen) * 2 - 1
        images = functional.interpolate(coarse, size=(FIT_SIZE, FIT_SIZE), mode="bilinear")
        param = next(vae.parameters())
        with torch.no_grad():
            latents = vae.encode(
                images[:, :, None].to(param.device, param.dtype)
            ).latent_dist.mode()
        latents = normalise(vae, latents.float().cpu())[:, :, 0]  # (B, C, h, w)
        _, c, h, w = latents.shape
        target = functional.adaptive_avg_pool2d(images, (h, w))  # (B, 3, h, w) in [-1, 1]
        x = latents.permute(0, 2, 3, 1).reshape(-1, c)
        x = torch.cat([x, torch.ones(x.shape[0], 1)], dim=1)
        y = target.permute(0, 2, 3, 1).reshape(-1, 3)
        solution = torch.linalg.lstsq(x, y).solution  # (C + 1, 3)
        return cls(solution[:-1], solution[-1], scale)

    def __call__(self, latents: Any) -> Any:
        """uint8 RGB (H, W, 3) of the middle frame of a (1, C, F, h, w) latent."""
        import numpy as np
        import torch

        with torch.no_grad():
            frame = latents[0, :, latents.shape[2] // 2].float().cpu()  # (C, h, w)
            rgb = torch.einsum("chw,cd->hwd", frame, self.weight) + self.bias
            rgb = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
        return np.repeat(np.repeat(rgb, self.scale, axis=0), self.scale, axis=1)


def normalise(vae: Any, latents: Any) -> Any:
    """Latents as the denoising loop sees them: (z - mean) / std per channel."""
    import torch

    cfg = vae.config
    c = latents.shape[1]
    mean = torch.tensor(cfg.latents_mean, dtype=latents.dtype).view(1, c, 1, 1, 1)
    std = torch.tensor(cfg.latents_std, dtype=latents.dtype).view(1, c, 1, 1, 1)
    return (latents - mean) / std
