"""optfree: optimizers and learning-rate schedules that need little schedule tuning.

Schedule-Free SGD/AdamW/RAdam (and a wrapper for any optax optimizer),
ScheduleFree+ (learning-rate-free),
AdaBound/AMSBound/AdaBoundW, Lion, and the PyTorch family of learning-rate and
momentum schedules, each an optax ``GradientTransformation`` or schedule.
"""

from optfree import schedules
from optfree.adabound import adabound
from optfree.adabound import adaboundw
from optfree.adabound import amsbound
from optfree.adabound import scale_by_adabound
from optfree.adabound import ScaleByAdaBoundState
from optfree.lion import lion
from optfree.lion import scale_by_lion
from optfree.rounding import stochastic_rounding
from optfree.rounding import StochasticRoundingState
from optfree.schedule_free import eval_params
from optfree.schedule_free import schedule_free
from optfree.schedule_free import schedule_free_adamw
from optfree.schedule_free import schedule_free_radam
from optfree.schedule_free import schedule_free_sgd
from optfree.schedule_free import ScheduleFreeState
from optfree.schedule_free_plus import schedule_free_plus
from optfree.schedule_free_plus import ScheduleFreePlusState
from optfree.schedules import constant_factor_schedule
from optfree.schedules import cosine_annealing_schedule
from optfree.schedules import cosine_warm_restarts_schedule
from optfree.schedules import cyclic_momentum_schedule
from optfree.schedules import cyclic_schedule
from optfree.schedules import exponential_schedule
from optfree.schedules import linear_factor_schedule
from optfree.schedules import multistep_schedule
from optfree.schedules import onecycle_momentum_schedule
from optfree.schedules import onecycle_schedule
from optfree.schedules import per_epoch
from optfree.schedules import polynomial_decay_schedule
from optfree.schedules import sequential_schedule
from optfree.schedules import step_schedule
from optfree.schedules import trapezoidal_schedule
from optfree.schedules import warmup_stable_decay_schedule

__version__ = "0.1.0"

__all__ = (
    "ScaleByAdaBoundState",
    "ScheduleFreePlusState",
    "ScheduleFreeState",
    "StochasticRoundingState",
    "adabound",
    "adaboundw",
    "amsbound",
    "constant_factor_schedule",
    "cosine_annealing_schedule",
    "cosine_warm_restarts_schedule",
    "cyclic_momentum_schedule",
    "cyclic_schedule",
    "eval_params",
    "exponential_schedule",
    "linear_factor_schedule",
    "lion",
    "multistep_schedule",
    "onecycle_momentum_schedule",
    "onecycle_schedule",
    "per_epoch",
    "polynomial_decay_schedule",
    "scale_by_adabound",
    "scale_by_lion",
    "schedule_free",
    "schedule_free_adamw",
    "schedule_free_plus",
    "schedule_free_radam",
    "schedule_free_sgd",
    "schedules",
    "sequential_schedule",
    "step_schedule",
    "stochastic_rounding",
    "trapezoidal_schedule",
    "warmup_stable_decay_schedule",
)
