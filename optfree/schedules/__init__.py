"""Learning-rate and momentum schedules with PyTorch parity.

Each schedule is a function of ``count``, the number of updates already applied
(0 for the first update), returning the value that update uses: the value
``torch.optim.lr_scheduler`` gives the optimizer at step ``count`` when
``scheduler.step()`` follows every ``optimizer.step()``. All of them accept
traced integer counts of any shape (``jit``, ``vmap``) and return the default
float dtype (float32, or float64 under ``jax_enable_x64``).
"""

from optfree.schedules._plot import plot
from optfree.schedules._schedules import constant_factor_schedule
from optfree.schedules._schedules import cosine_annealing_schedule
from optfree.schedules._schedules import cosine_warm_restarts_schedule
from optfree.schedules._schedules import cyclic_momentum_schedule
from optfree.schedules._schedules import cyclic_schedule
from optfree.schedules._schedules import exponential_schedule
from optfree.schedules._schedules import linear_factor_schedule
from optfree.schedules._schedules import multistep_schedule
from optfree.schedules._schedules import onecycle_momentum_schedule
from optfree.schedules._schedules import onecycle_schedule
from optfree.schedules._schedules import per_epoch
from optfree.schedules._schedules import polynomial_decay_schedule
from optfree.schedules._schedules import sequential_schedule
from optfree.schedules._schedules import step_schedule
from optfree.schedules._schedules import trapezoidal_schedule
from optfree.schedules._schedules import warmup_stable_decay_schedule

__all__ = (
    "constant_factor_schedule",
    "cosine_annealing_schedule",
    "cosine_warm_restarts_schedule",
    "cyclic_momentum_schedule",
    "cyclic_schedule",
    "exponential_schedule",
    "linear_factor_schedule",
    "multistep_schedule",
    "onecycle_momentum_schedule",
    "onecycle_schedule",
    "per_epoch",
    "plot",
    "polynomial_decay_schedule",
    "sequential_schedule",
    "step_schedule",
    "trapezoidal_schedule",
    "warmup_stable_decay_schedule",
)
