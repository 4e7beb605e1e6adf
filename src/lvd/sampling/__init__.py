"""Unfolding: a trained run + detector-level events -> K parton-level samples per event (``unfold``).

The reverse-time samplers themselves are γ/ε math and live beside the schedule, in :mod:`lvd.models.samplers`.
"""
