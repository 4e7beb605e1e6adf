"""Run in a subprocess with 4 simulated CPU devices (XLA_FLAGS set by the caller); prints JSON results.

1. One training step on a 4-device mesh equals the 1-device step on the same global batch.
2. Unfolding on 4 devices gives the same samples as on 1 device (per-event seeding).
"""

import json
import sys

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from lvd import config
from lvd.data.loader import Loader
from lvd.data.representation import Normalizer, raw_arrays
from lvd.data.schema import read_events
from lvd.distributed import make_mesh
from lvd.models.base import Dims
from lvd.models.registry import build_model
from lvd.sampling.unfold import Unfolder
from lvd.training.state import init_state
from lvd.training.step import make_train_step


def main(data_path: str, run_dir: str, overrides: list[str]) -> None:
    assert jax.device_count() == 4, jax.devices()
    opts = config.load_options(None, overrides, defaults=config.small())
    raw = raw_arrays(read_events(data_path, require_truth=True), opts.data)
    norm = Normalizer.fit(raw, opts.data)
    arrays = norm.apply(raw)
    out = {}
    results = {}
    for n in (1, 4):
        mesh = make_mesh(jax.devices()[:n])
        graphdef, state = init_state(build_model(opts, Dims.from_normalizer(norm)), opts)
        state = jax.device_put(state, NamedSharding(mesh, P()))
        loader = Loader(arrays, np.arange(arrays.n_events), opts.train.batch_size, 0, mesh)
        step = make_train_step(graphdef, opts, mesh)
        losses = []
        for i in range(2):
            state, m = step(state, loader.train_batch(i))
            losses.append(float(m["loss"]))
        results[n] = (jax.tree.leaves(jax.device_get(state.main)), losses)
        out[f"batch_shards_{n}"] = len(loader.train_batch(0).x.addressable_shards)
    # Adam turns round-off in gradients that are ~0 into updates of ±lr, so parameters are compared in
    # units of the learning rate; the gradients themselves are compared below.
    out["param_max_abs_diff"] = max(float(np.max(np.abs(a - b))) for a, b in zip(results[1][0], results[4][0], strict=True))
    out["learning_rate"] = opts.train.learning_rate
    grads = {}
    for n in (1, 4):
        mesh = make_mesh(jax.devices()[:n])
        graphdef, state = init_state(build_model(opts, Dims.from_normalizer(norm)), opts)
        state = jax.device_put(state, NamedSharding(mesh, P()))
        batch = Loader(arrays, np.arange(arrays.n_events), opts.train.batch_size, 0, mesh).train_batch(0)
        key = jax.random.key(0)

        def loss(main, state=state, graphdef=graphdef, batch=batch, key=key):
            from flax import nnx

            model = nnx.merge(graphdef, state.sched, main, state.rest)
            return (model.loss(batch, key).total * batch.weight).sum() / batch.weight.sum()

        grads[n] = jax.tree.leaves(jax.device_get(jax.jit(jax.grad(loss))(state.main)))
    scale = max(float(np.max(np.abs(g))) for g in grads[1])
    out["grad_max_abs_diff_over_scale"] = max(float(np.max(np.abs(a - b))) for a, b in zip(grads[1], grads[4], strict=True)) / scale
    out["losses_1"], out["losses_4"] = results[1][1], results[4][1]
    samples = {}
    for n in (1, 4):
        u = Unfolder.load(run_dir, mesh=make_mesh(jax.devices()[:n]))
        a = u.prepare(read_events(data_path).take(slice(0, 200)))
        samples[n] = u.sample_arrays(a, 3, sampler="ancestral", steps=4, batch_size=96, seed=2)
    out["unfold_max_abs_diff"] = float(np.max(np.abs(samples[1] - samples[4])))
    out["unfold_scale"] = float(np.max(np.abs(samples[1])))
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
