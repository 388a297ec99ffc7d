"""Synthetic images (no download) and image corpora for the vision transformers of :mod:`mi_massive.core.loading.vit`.

>>> imgs, kinds = synthetic_images(5, size=16)
>>> tuple(imgs.shape), kinds, float(imgs.min()) >= 0.0 and float(imgs.max()) <= 1.0
((5, 3, 16, 16), ['gradient', 'checker', 'disc', 'stripes', 'noise'], True)

Five deterministic kinds, drawn in turn (image i is kind ``i % 5``) with parameters from ``seed + i``: a colour
``gradient``, a ``checker`` board, a filled ``disc`` on a plain background, oriented ``stripes`` and uniform
``noise``. Pixels are RGB in [0, 1]; :func:`image_corpus` normalises them with the model's processor mean and
std (0.5 / 0.5 for the toys) and wraps them as a :class:`~mi_massive.core.corpus.Corpus` whose "tokens" are the
image positions (see :mod:`mi_massive.core.loading.vit`).
"""

from __future__ import annotations

import hashlib
import math

import torch

from mi_massive.core.corpus.corpus import Corpus
from mi_massive.errors import MiMassiveError

IMAGE_KINDS = ("gradient", "checker", "disc", "stripes", "noise")


def synthetic_image(kind: str, size: int, seed: int) -> torch.Tensor:
    """One [3, size, size] image in [0, 1] of ``kind`` (:data:`IMAGE_KINDS`), parameters drawn from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    u = lambda *shape: torch.rand(*shape, generator=g)  # noqa: E731
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    if kind == "gradient":
        a, b = u(3, 1, 1), u(3, 1, 1)
        angle = float(u(1)) * 2 * math.pi
        t = (math.cos(angle) * x + math.sin(angle) * y - min(0, math.cos(angle)) - min(0, math.sin(angle)))
        t = t / t.max().clamp_min(1e-6)
        return a + (b - a) * t[None]
    if kind == "checker":
        cells = 2 + int(float(u(1)) * 6)
        board = ((x * cells).floor() + (y * cells).floor()) % 2
        a, b = u(3, 1, 1), u(3, 1, 1)
        return a + (b - a) * board[None]
    if kind == "disc":
        cx, cy, r = 0.25 + 0.5 * float(u(1)), 0.25 + 0.5 * float(u(1)), 0.15 + 0.2 * float(u(1))
        inside = ((x - cx) ** 2 + (y - cy) ** 2 <= r * r).float()
        bg, fg = u(3, 1, 1), u(3, 1, 1)
        return bg + (fg - bg) * inside[None]
    if kind == "stripes":
        angle, freq = float(u(1)) * math.pi, 2 + float(u(1)) * 6
        wave = 0.5 + 0.5 * torch.sin(2 * math.pi * freq * (math.cos(angle) * x + math.sin(angle) * y))
        a, b = u(3, 1, 1), u(3, 1, 1)
        return a + (b - a) * wave[None]
    if kind == "noise":
        return u(3, size, size)
    raise MiMassiveError(f"unknown image kind '{kind}'; choose one of {', '.join(IMAGE_KINDS)}")


def synthetic_images(n: int, *, size: int = 32, seed: int = 0,
                     kinds: tuple[str, ...] = IMAGE_KINDS) -> tuple[torch.Tensor, list[str]]:
    """``n`` images [n, 3, size, size] in [0, 1] cycling through ``kinds``, and the kind of each."""
    if n < 1 or size < 2:
        raise MiMassiveError(f"need n >= 1 images of size >= 2, got n={n}, size={size}")
    names = [kinds[i % len(kinds)] for i in range(n)]
    return torch.stack([synthetic_image(k, size, seed + i).clamp(0, 1) for i, k in enumerate(names)]), names


def image_corpus(model, images: torch.Tensor | None = None, *, n_images: int = 8, seed: int = 0,
                 labels: list[str] | None = None, name: str | None = None) -> Corpus:
    """A corpus of images for a vision model (:class:`~mi_massive.core.loading.vit.VisionModel`).

    ``images``: [n, 3, H, W] RGB in [0, 1] at the model's image size (default: ``n_images`` synthetic images
    from ``seed``). They are normalised with the model's mean / std and registered with the model; the
    corpus's sequence i holds the token ids of image i's positions. ``source`` records the image kinds
    (``labels``) and a SHA-256 of the pixels.
    """
    cfg = getattr(model, "cfg", None)
    if not getattr(cfg, "is_visual_model", False) or not hasattr(model, "register_images"):
        raise MiMassiveError("image corpora are for vision models (mi_massive.core.loading.vit.load_vision)")
    if images is None:
        images, labels = synthetic_images(n_images, size=cfg.image_size, seed=seed)
        kind = "synthetic images"
    else:
        kind = "images"
    images = images.float()
    if float(images.min()) < 0.0 or float(images.max()) > 1.0:
        raise MiMassiveError("images must hold RGB values in [0, 1] (they are normalised here)")
    mean = torch.tensor(cfg.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.image_std).view(1, 3, 1, 1)
    ids = model.register_images((images - mean) / std)
    digest = hashlib.sha256(images.numpy().tobytes()).hexdigest()
    return Corpus(name=name or f"{kind} x{len(ids)}", sequences=[model.token_ids(i) for i in ids], prepend_bos=False,
                  seq_len=cfg.n_tokens, n_samples=len(ids), seed=seed, bos_token_id=None, pad_token_id=0,
                  source={"kind": kind, "labels": list(labels) if labels else None, "image_size": cfg.image_size,
                          "sha256": digest, "image_ids": ids, "image_mean": cfg.image_mean,
                          "image_std": cfg.image_std},
                  prepend_bos_source="user")
