"""``lvd bench``: speed and memory of training and unfolding on this machine, measured side by side.

For one options file and batch size it measures, in one process:

* the machine's dense float32 matmul rate (the reference "peak" this run can reach),
* train-step compile time, events/s, and the achieved FLOP rate (XLA cost analysis) as a fraction of it,
* the input pipeline alone (gathering and placing a batch), as a fraction of the step time,
* unfolding events/s for each requested sampler and step count,
* peak memory (device memory statistics where the backend has them, else the process's peak RSS).

Synthetic data from the toy generator, so nothing is needed but the options.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from lvd.config import Options
from lvd.data.generate import toy
from lvd.data.loader import Loader
from lvd.data.representation import Arrays, Normalizer, raw_arrays
from lvd.data.schema import concatenate
from lvd.distributed import make_mesh
from lvd.models.base import Dims
from lvd.models.registry import build_model
from lvd.sampling.unfold import Unfolder
from lvd.training.state import init_state
from lvd.training.step import make_train_step


@dataclass
class BenchResult:
    device: str
    n_devices: int
    options: str
    batch_size: int
    matmul_tflops: float
    compile_s: float
    step_ms: float
    train_events_per_s: float
    step_tflop: float  # per step, from XLA's cost analysis
    achieved_tflops: float
    fraction_of_matmul: float
    input_ms: float
    input_fraction: float
    unfold: list[dict[str, Any]] = field(default_factory=list)
    peak_memory_gb: float = float("nan")
    memory_source: str = ""

    def table(self) -> list[tuple[str, str]]:
        rows = [("device", f"{self.device} × {self.n_devices}"), ("options", self.options),
                ("global batch", f"{self.batch_size:,}"),
                ("dense matmul rate (float32)", f"{self.matmul_tflops:.3f} TFLOP/s"),
                ("train step compile", f"{self.compile_s:.1f} s"),
                ("train step", f"{self.step_ms:.2f} ms"), ("train events/s", f"{self.train_events_per_s:,.0f}"),
                ("train step FLOPs (XLA)", f"{self.step_tflop * 1e3:.2f} GFLOP"),
                ("achieved", f"{self.achieved_tflops:.3f} TFLOP/s = {100 * self.fraction_of_matmul:.1f} % of matmul"),
                ("input pipeline per step", f"{self.input_ms:.2f} ms = {100 * self.input_fraction:.1f} % of the step")]
        for u in self.unfold:
            rows.append((f"unfold {u['sampler']} {u['steps']} steps", f"{u['events_per_s']:,.0f} events/s "
                         f"(compile {u['compile_s']:.1f} s)"))
        rows.append(("peak memory", f"{self.peak_memory_gb:.2f} GB ({self.memory_source})"))
        return rows


def matmul_rate(n: int = 2048, repeats: int = 10) -> float:
    """Dense float32 matmul throughput in TFLOP/s on the default devices (one matmul per device)."""
    devices = jax.devices()
    mesh = jax.sharding.Mesh(np.array(devices), ("data",))
    a = jax.device_put(jnp.ones((len(devices) * n, n), jnp.float32), NamedSharding(mesh, P("data")))
    b = jax.device_put(jnp.ones((n, n), jnp.float32), NamedSharding(mesh, P()))
    f = jax.jit(lambda a, b: (a @ b) * 0.5)
    jax.block_until_ready(f(a, b))
    t = time.perf_counter()
    for _ in range(repeats):
        out = f(a, b)
    jax.block_until_ready(out)
    return 2.0 * len(devices) * n**3 * repeats / (time.perf_counter() - t) / 1e12


def _time(fn, repeats: int) -> float:
    t = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    jax.block_until_ready(out)
    return (time.perf_counter() - t) / repeats


def peak_memory() -> tuple[float, str]:
    stats = [d.memory_stats() or {} for d in jax.local_devices()]
    peaks = [s.get("peak_bytes_in_use") for s in stats if s.get("peak_bytes_in_use")]
    if peaks:
        return max(peaks) / 1e9, "device peak bytes in use"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, "process peak RSS"


def run(opts: Options, label: str, n_events: int = 0, train_steps: int = 20,
        samplers: tuple[tuple[str, int], ...] = (("dpm++", 20),), unfold_events: int = 0,
        say=lambda s: None) -> BenchResult:
    b = opts.train.batch_size
    norm, arrays = _toy_arrays(opts, n_events or max(4 * b, 20_000), say)
    mesh = make_mesh()
    say("matmul reference")
    peak = matmul_rate()
    graphdef, state = init_state(build_model(opts, Dims.from_normalizer(norm)), opts)
    state = jax.device_put(state, NamedSharding(mesh, P()))
    loader = Loader(arrays, np.arange(arrays.n_events), b, opts.train.seed, mesh)
    state, compile_s, step_s, flops = _time_training(make_train_step(graphdef, opts, mesh), state, loader,
                                                     train_steps, say)
    input_s = _time(lambda: loader.train_batch(7), max(5, train_steps // 2))

    result = BenchResult(device=jax.devices()[0].device_kind, n_devices=jax.device_count(), options=label,
                         batch_size=b, matmul_tflops=peak, compile_s=compile_s, step_ms=1e3 * step_s,
                         train_events_per_s=b / step_s, step_tflop=flops / 1e12,
                         achieved_tflops=flops / step_s / 1e12, fraction_of_matmul=flops / step_s / 1e12 / peak,
                         input_ms=1e3 * input_s, input_fraction=input_s / step_s)
    if samplers:
        # the trained EMA parameters in memory, unfolded as ``lvd unfold`` does
        unfolder = Unfolder(graphdef, state.ema(), norm, opts, mesh)
        n_unf = unfold_events or min(arrays.n_events, max(opts.sample.batch_size * 4, 8192))
        result.unfold = [_time_unfolding(unfolder, arrays.take(np.arange(n_unf)), sampler, steps, say)
                         for sampler, steps in samplers]
    result.peak_memory_gb, result.memory_source = peak_memory()
    return result


def _toy_arrays(opts: Options, n_events: int, say) -> tuple[Normalizer, Arrays]:
    """``n_events`` toy events, normalised with their own statistics."""
    say(f"generating {n_events:,} toy events")
    chunks, total = [], 0
    for chunk in toy.ToyGenerator(seed=opts.train.seed).chunks():
        chunks.append(chunk)
        total += chunk.n_events
        if total >= n_events:
            break
    raw = raw_arrays(concatenate(chunks).take(slice(0, n_events)), opts.data)
    norm = Normalizer.fit(raw, opts.data)
    return norm, norm.apply(raw)


def _time_training(step, state, loader: Loader, train_steps: int, say) -> tuple[Any, float, float, float]:
    """``(state after the steps, compile s, s per step, FLOPs per step by XLA's cost analysis)``."""
    say("compiling the train step")
    batch = loader.train_batch(0)
    t = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_s = time.perf_counter() - t
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
    state, m = step(state, batch)
    jax.block_until_ready(m)
    say(f"timing {train_steps} train steps")
    batches = [loader.train_batch(i) for i in range(1, 4)]
    t = time.perf_counter()
    for i in range(train_steps):
        state, m = step(state, batches[i % len(batches)])
    jax.block_until_ready(m)
    return state, compile_s, (time.perf_counter() - t) / train_steps, flops


def _time_unfolding(u: Unfolder, arrays: Arrays, sampler: str, steps: int, say) -> dict[str, Any]:
    """Events/s of unfolding ``arrays`` (one sample each), after a first batch that compiles."""
    say(f"unfolding with {sampler}, {steps} steps")
    first = arrays.take(np.arange(min(arrays.n_events, u.options.sample.batch_size)))
    t = time.perf_counter()
    u.sample_arrays(first, 1, sampler=sampler, steps=steps)
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    u.sample_arrays(arrays, 1, sampler=sampler, steps=steps)
    dt = time.perf_counter() - t
    return {"sampler": sampler, "steps": steps, "events": arrays.n_events, "events_per_s": arrays.n_events / dt,
            "compile_s": compile_s}
