"""Placeholder until this module lands (work in progress this session)."""

def _unimplemented(*args, **kwargs):
  raise NotImplementedError

constant_factor_schedule = _unimplemented
cosine_annealing_schedule = _unimplemented
cosine_warm_restarts_schedule = _unimplemented
cyclic_momentum_schedule = _unimplemented
cyclic_schedule = _unimplemented
exponential_schedule = _unimplemented
linear_factor_schedule = _unimplemented
multistep_schedule = _unimplemented
onecycle_momentum_schedule = _unimplemented
onecycle_schedule = _unimplemented
per_epoch = _unimplemented
polynomial_decay_schedule = _unimplemented
sequential_schedule = _unimplemented
step_schedule = _unimplemented
trapezoidal_schedule = _unimplemented
warmup_stable_decay_schedule = _unimplemented
