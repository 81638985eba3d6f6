"""Placeholder until this module lands (work in progress this session)."""

def _unimplemented(*args, **kwargs):
  raise NotImplementedError

adabound = _unimplemented
adaboundw = _unimplemented
amsbound = _unimplemented
scale_by_adabound = _unimplemented
