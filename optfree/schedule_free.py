"""Placeholder until this module lands (work in progress this session)."""

def _unimplemented(*args, **kwargs):
  raise NotImplementedError

eval_params = _unimplemented
schedule_free = _unimplemented
schedule_free_adamw = _unimplemented
schedule_free_radam = _unimplemented
schedule_free_sgd = _unimplemented
ScheduleFreeState = _unimplemented
