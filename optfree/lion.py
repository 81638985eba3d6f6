"""Placeholder until this module lands (work in progress this session)."""

def _unimplemented(*args, **kwargs):
  raise NotImplementedError

lion = _unimplemented
scale_by_lion = _unimplemented
