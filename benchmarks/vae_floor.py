"""LVD's floor: what its VAE alone gives back when it is handed the truth (encode, decode, no diffusion).

    python benchmarks/vae_floor.py RUN OUT [--data TEST.h5 | --events 20000] [--unfolded UNFOLDED.h5] [--seed 0]

Every draw an LVD writes passes through its decoder, so whatever the decoder cannot reconstruct from a latent —
a mass line shape, a well-measured lepton — is a floor the diffusion cannot go below, however well it learns
the latent posterior. This script measures that floor on events the model never saw: the truth ``x`` and the
detector embedding ``c`` go into the encoder, and the decoder's output is turned into on-shell decay products
exactly as ``lvd unfold`` turns a sampled latent. Two reconstructions, K = 4 each:

* ``mean``: z = the encoder's mean (the best the decoder can do from the latent it was taught);
* ``trained``: z = mean + σ·ε + e^{γ₀/2}·ε₀, the noisy latent the reconstruction loss saw during training.

For each headline observable: W1 of the reconstruction against the truth (the floor), W1 of the model's
unfolding (``--unfolded``: an ``lvd unfold`` output of the same events, e.g. the one benchmarks/closure.py
writes) and, where there is one, of the detector-level stand-in (the reconstructed lepton, MET, the W-mass
neutrino pz); and the closure χ²/bin of the reconstruction (docs/design.md §6). Writes ``OUT/vae_floor.md`` and
``OUT/vae_floor.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from lvd.data.generate import toy
from lvd.data.representation import raw_arrays
from lvd.data.schema import read_events
from lvd.data.unfolded import read_unfolded
from lvd.evaluation.metrics import wasserstein
from lvd.evaluation.report import naive_estimates
from lvd.measurement.closure import HEADLINE, closure_all
from lvd.measurement.observables import derived
from lvd.sampling.unfold import Unfolder, daughters_to_particles

DATA_SEED = 7_200_000  # as benchmarks/closure.py: events never used for training or the demo
K = 4
BATCH = 4096


def reconstruct(u: Unfolder, path: Path, mode: str, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """``particle -> feature -> [N, K]``: the decoder's reconstruction of each event's truth."""
    data = read_events(path, u.layout, require_truth=True)
    arrays = u.normalizer.apply(raw_arrays(data, u.options.data, with_truth=True))
    m_opts = u.options.model
    graphdef = u.graphdef

    @jax.jit
    def run(params, x, objects, mask, met, key):
        model = params.model(graphdef)
        if not hasattr(model, "encoder") or not hasattr(model, "_decode"):
            raise SystemExit(f"{u.options.model.kind}: not an LVD (no encoder/decoder to measure)")
        c = model.detector(objects, mask, met)
        mean, log_sigma = model.encoder(x, c if m_opts.conditional_encoder else None)
        z = jnp.repeat(mean[:, None], K, axis=1)  # [B, K, L]
        if mode == "trained":
            k1, k2 = jax.random.split(key)
            sigma = 0.0 if m_opts.deterministic_encoder else jnp.exp(log_sigma)[:, None]
            gamma_0 = model.schedule.endpoints()[0]
            z = z + sigma * jax.random.normal(k1, z.shape) + jnp.exp(0.5 * gamma_0) * jax.random.normal(k2, z.shape)
        c_k = jnp.repeat(c[:, None], K, axis=1)
        x_hat = jax.vmap(model._decode, in_axes=(1, 1), out_axes=1)(z, c_k)  # [B, K, D]
        return model.dims.daughters(x_hat)  # [B, K, 6, 4]

    out = []
    for start in range(0, arrays.n_events, BATCH):
        sl = slice(start, start + BATCH)
        key = jax.random.fold_in(jax.random.key(seed), start)
        out.append(np.asarray(run(u.params, arrays.x[sl], arrays.objects[sl], arrays.mask[sl], arrays.met[sl], key)))
    return daughters_to_particles(np.concatenate(out))


def w1_table(truth: dict, w: np.ndarray, columns: dict[str, dict | None]) -> dict[str, dict[str, float]]:
    """``observable -> column -> W1`` (draws ``[N, K]`` flattened with their events' weights)."""
    out = {}
    for name in (*HEADLINE, "lepton_eta", "b_had_eta", "b_lep_pt"):
        out[name] = {}
        for col, values in columns.items():
            if values is None or name not in values:
                continue
            v = np.asarray(values[name], np.float64)
            wv = np.repeat(w, v.shape[1]) if v.ndim == 2 else w
            out[name][col] = wasserstein(truth[name], v.reshape(-1), w, wv)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--unfolded", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    data_path = args.data or args.out / "data.h5"
    if args.data is None and not data_path.exists():
        toy.generate_file(data_path, args.events, seed=DATA_SEED + args.seed)
    u = Unfolder.load(args.run)
    data = read_events(data_path, u.layout, require_truth=True)
    w = data.event_weights().astype(np.float64)
    truth = derived(data.truth)
    columns: dict[str, dict | None] = {}
    recon = {}
    for mode in ("mean", "trained"):
        recon[mode] = reconstruct(u, data_path, mode, args.seed)
        columns[f"VAE floor ({mode} z)"] = derived(recon[mode])
    if args.unfolded is not None:
        columns["unfolding"] = derived(read_unfolded(args.unfolded).unfolded)
    columns["detector"] = naive_estimates(data)
    table = w1_table(truth, w, columns)
    closure = {mode: closure_all(truth, derived(recon[mode]), w, seed=args.seed)["observables"] for mode in recon}
    cols = list(columns)
    lines = [f"# LVD's VAE floor: `{args.run}`", "",
             f"Measured {time.strftime('%Y-%m-%d')} with `python benchmarks/vae_floor.py {' '.join(sys.argv[1:])}`: "
             f"{data.n_events:,} events never seen in training; reconstruction = encode the truth (with the "
             f"detector embedding), decode, K = {K}. W1 against the truth (GeV for masses and momenta); "
             "closure χ²/bin (stat) of the reconstruction, 12 equal-count bins.", "",
             "| observable | " + " | ".join(f"W1 {c}" for c in cols) + " | χ²/bin floor (mean z) | χ²/bin floor (trained z) |",
             "|---|" + "---|" * (len(cols) + 2)]
    for name, row in table.items():
        cells = [f"{row[c]:.3g}" if c in row else "—" for c in cols]
        chi = [f"{closure[m][name]['chi2_stat']['chi2_per_ndf']:.2f}" if name in closure[m] else "—" for m in recon]
        lines.append(f"| {name} | " + " | ".join(cells) + " | " + " | ".join(chi) + " |")
    lines += ["", f"Wall time {time.time() - t0:.0f} s."]
    (args.out / "vae_floor.md").write_text("\n".join(lines) + "\n")
    (args.out / "vae_floor.json").write_text(json.dumps({"w1": table, "closure": closure}, indent=1, default=float))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
