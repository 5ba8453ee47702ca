"""The one place where experiments plug into training: ``zoo.engine.train(cfg, hook=...)``.

A ``TrainingHook`` is called by the engine at fixed points of every run; each method of this base
class does nothing, so ``TrainingHook()`` trains exactly as no hook at all. The lab (research/,
not installed: its background randomisation, off-head term, part-shuffled faces, map
normalisation and template variants) subclasses it; the product's methods never need one.

    step          engine call                           default
    setup         wrap_dataset(dataset, cfg)            the dataset itself
    every step    content_free_images(faces, free, g)   free (the blank / noise images)
                  templates(ecloss, bank)               bank (the paper's templates)
                  ecloss_maps(maps)                     maps
                  extra_loss(face_maps, extras)         None (no extra term)
    records       describe()                            {} (nothing recorded)

What ``describe()`` returns is written, when it is not empty, as ``training.hook`` of the model's
config.json and as ``hook`` of train_config.json and summary.json, so a model says which hook
trained it. A hook must keep a run a function of its seed: it draws its randomness from the
generator it is given or from torch's global RNG (which the engine seeds per epoch).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

__all__ = ["TrainingHook"]


class TrainingHook:
    """No-op base class of the engine's training hook (docs/training.md, "Training hooks")."""

    def describe(self) -> dict:
        """What this hook does, JSON-serialisable (e.g. {"hook": "research.hooks.X", "w": 1}):
        recorded in the run's config, train_config.json and summary.json. {} records nothing."""
        return {}

    def wrap_dataset(self, dataset, cfg):
        """The training set of a run, called once in setup with the resolved TrainConfig, before
        the network is built. Its items are (image, label, *extras): the extras reach
        ``extra_loss`` batched. Raise ValueError for a setting the hook cannot train with."""
        return dataset

    def content_free_images(self, faces: torch.Tensor, free: torch.Tensor,
                            generator: torch.Generator) -> torch.Tensor:
        """The content-free images of a step (only when the content-free term is on): ``free``
        (k, 3, S, S) as drawn by zoo.data.content_free, ``faces`` the step's face images (on
        the CPU), ``generator`` seeded by (seed, step, rank) alone. Return k images."""
        return free

    def templates(self, ecloss, bank: torch.Tensor) -> torch.Tensor:
        """The templates of the MI and content-free terms: ``bank`` is the paper's set of
        ``ecloss`` (a zoo.ecloss.ECLoss) on the maps' device, (M, n, n) float32. Another bank
        must end with the negative template (zoo.ecloss.content_free_term relies on it)."""
        return bank

    def ecloss_maps(self, maps: torch.Tensor) -> torch.Tensor:
        """The target-layer maps (B, C, n, n), float32 at least, as the MI and content-free
        terms see them (faces and content-free images alike)."""
        return maps

    def extra_loss(self, face_maps: torch.Tensor,
                   extras: Sequence[torch.Tensor]) -> Optional[torch.Tensor]:
        """A term added to an ECLoss run's loss, or None: ``face_maps`` the target-layer maps
        of the step's faces (B, C, n, n), ``extras`` the batch's extra item fields (see
        ``wrap_dataset``) on the maps' device."""
        return None
