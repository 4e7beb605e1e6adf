"""In-memory batching onto a ``jax.sharding`` mesh with a ``data`` axis.

The arrays stay in host memory; a batch is gathered by index (a copy of the batch only) and placed with
``NamedSharding(mesh, P('data'))``, so each device receives its slice. The order of epoch e is the
permutation drawn from ``(seed, e)``: the batch of any step is a function of the step alone, which makes
resuming exact without storing any loader state.

With several processes each holds only its own events and contributes ``batch_size / process_count`` of
every global batch (``jax.make_array_from_process_local_data``); its permutation is drawn from
``(seed, process, e)``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from lvd.data.representation import Arrays
from lvd.errors import DataError


class Batch(NamedTuple):
    """Normalised inputs of B events on the mesh: ``x [B, D]`` partons (None when unfolding),
    ``objects [B, N, F]``, ``mask [B, N]``, ``met [B, Fm]``, ``weight [B]``."""

    x: jax.Array | None
    objects: jax.Array
    mask: jax.Array
    met: jax.Array
    weight: jax.Array


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, validation)`` event indices: a fixed, seeded subset of ``round(n·fraction)`` is held out."""
    order = np.random.default_rng([seed, 0x5EED]).permutation(n)
    n_val = int(round(n * fraction))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


class Loader:
    """Batches of ``batch_size`` events from ``arrays[indices]``; the last partial batch is padded with weight 0."""

    def __init__(self, arrays: Arrays, indices: np.ndarray, batch_size: int, seed: int, mesh: Mesh):
        n_dev, n_proc = mesh.devices.size, jax.process_count()
        if batch_size % n_dev or batch_size % n_proc:
            raise DataError(f"batch size {batch_size} is not divisible by the {n_dev} devices of the mesh")
        self.arrays, self.indices, self.global_batch, self.seed, self.mesh = arrays, indices, batch_size, seed, mesh
        self.batch_size = batch_size // n_proc  # this process's share of every batch
        self.process = jax.process_index()
        self.sharding = NamedSharding(mesh, P("data"))

    @property
    def steps_per_epoch(self) -> int:
        return len(self.indices) // self.batch_size

    @functools.lru_cache(maxsize=2)  # noqa: B019  (one loader per run; two epochs around a boundary)
    def _order(self, epoch: int) -> np.ndarray:
        key = [self.seed, epoch] if jax.process_count() == 1 else [self.seed, self.process, epoch]
        return self.indices[np.random.default_rng(key).permutation(len(self.indices))]

    def position(self, step: int) -> tuple[int, int]:
        """``(epoch, batch within epoch)`` of a training step."""
        if self.steps_per_epoch == 0:
            raise DataError(f"{len(self.indices)} training events are fewer than one batch of {self.batch_size}")
        return divmod(step, self.steps_per_epoch)

    def train_batch(self, step: int) -> Batch:
        epoch, i = self.position(step)
        return self.place(self._order(epoch)[i * self.batch_size:(i + 1) * self.batch_size])

    def place(self, idx: np.ndarray, weight_scale: float = 1.0) -> Batch:
        """Gather events ``idx`` (padding to a full batch with zero-weight copies) and shard them."""
        n = len(idx)
        weight = self.arrays.weight[idx] * np.float32(weight_scale)
        if n < self.batch_size:
            idx = np.concatenate([idx, np.full(self.batch_size - n, idx[0])])
            weight = np.concatenate([weight, np.zeros(self.batch_size - n, weight.dtype)])
        a = self.arrays
        host = Batch(x=None if a.x is None else a.x[idx], objects=a.objects[idx], mask=a.mask[idx],
                     met=a.met[idx], weight=weight)
        return jax.tree.map(self._global, host)

    def _global(self, local: np.ndarray) -> jax.Array:
        shape = (self.global_batch, *local.shape[1:])
        return jax.make_array_from_process_local_data(self.sharding, local, shape)

    def sequential(self, max_batches: int = 0) -> Iterator[Batch]:
        """Every event once, in order (validation); at most ``max_batches`` batches when > 0.

        Every process yields the same number of batches (those that run out pad with zero-weight events).
        """
        n_batches = -(-len(self.indices) // self.batch_size)
        if jax.process_count() > 1:
            n_batches = _max_over_processes(n_batches)
        if max_batches:
            n_batches = min(n_batches, max_batches)
        for k in range(n_batches):
            idx = self.indices[k * self.batch_size:(k + 1) * self.batch_size]
            # a process that has run out contributes zero-weight events (any event will do)
            yield self.place(idx) if len(idx) else self.place(np.zeros(1, int), weight_scale=0.0)


def _max_over_processes(n: int) -> int:
    from jax.experimental import multihost_utils

    return int(np.max(multihost_utils.process_allgather(np.array([n]))))
