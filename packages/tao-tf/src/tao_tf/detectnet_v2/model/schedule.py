"""soft_start_annealing_schedule: TAO's learning-rate curve over the fraction of training done.

With progress p = step / total_steps in [0, 1]:
    p <  soft_start              lr = min_lr * (max_lr / min_lr) ** (p / soft_start)
    soft_start <= p < annealing  lr = max_lr
    p >= annealing               lr = max_lr * (min_lr / max_lr) ** ((p - annealing) / (1 - annealing))
(exponential ramps, so the rate changes by a constant factor per step).
"""

from __future__ import annotations

from tao_core.errors import TaoUserError


def soft_start_annealing_lr(progress: float, min_lr: float, max_lr: float, soft_start: float,
                            annealing: float) -> float:  # fmt: skip
    if not 0 < min_lr <= max_lr:
        raise TaoUserError(f"learning_rate: need 0 < min_learning_rate <= max_learning_rate, got {min_lr}, {max_lr}")
    if not 0 <= soft_start <= annealing <= 1:
        raise TaoUserError(f"learning_rate: need 0 <= soft_start <= annealing <= 1, got {soft_start}, {annealing}")
    p = min(max(progress, 0.0), 1.0)
    if p < soft_start:
        return min_lr * (max_lr / min_lr) ** (p / soft_start)
    if p < annealing or annealing >= 1:
        return max_lr
    return max_lr * (min_lr / max_lr) ** ((p - annealing) / (1 - annealing))


def lr_from_config(training_config):
    """A function progress -> lr for training_config.learning_rate (soft_start_annealing only)."""
    lr = training_config.learning_rate
    kind = lr.WhichOneof("learning_rate")
    if kind != "soft_start_annealing_schedule":
        raise TaoUserError(f"training_config.learning_rate: {kind or 'nothing'} set; tao-tf supports "
                           "soft_start_annealing_schedule")  # fmt: skip
    s = lr.soft_start_annealing_schedule
    return lambda p: soft_start_annealing_lr(p, s.min_learning_rate, s.max_learning_rate, s.soft_start, s.annealing)
