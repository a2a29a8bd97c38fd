"""A small AutoLRS config for the integration tests: it reaches τ_max in the second stage."""

from __future__ import annotations

from autolrs import AutoLRSConfig


def small_config(**changes) -> AutoLRSConfig:
    """Stages of 16 then 32 steps, three candidates of 8 then 16 steps, validation every 2."""
    base = dict(
        min_lr=1e-3,
        max_lr=0.5,
        stage_steps=16,
        max_stage_steps=32,
        trial_fraction=0.5,
        num_candidates=3,
        val_every=2,
        gp_fit_hyperparameters=False,
    )
    base.update(changes)
    return AutoLRSConfig(**base)
