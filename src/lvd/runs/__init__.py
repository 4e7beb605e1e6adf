"""Runs on disk: the checkpointed state, Orbax save/restore, and :class:`~lvd.runs.run.Checkpoint` (a run restored).

Below training and sampling, which both read and write runs through it.
"""
