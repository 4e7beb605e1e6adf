"""Tabulate Pythia 8's default proton PDF (NNPDF2.3 QCD+QED LO, αs(MZ)=0.130) for the toy generator.

Writes ``src/lvd/data/generate/pdf_table.npz``: ``log_x [Nx]``, ``log_q2 [NQ]``, ``xf [11, NQ, Nx]``
(x·f(x, Q²) for the parton ids in ``pdgid``), and ``alphas_mz``. Run once (needs the [generate] extra):

    python scripts/make_pdf_table.py
"""

from pathlib import Path

import numpy as np
import pythia8mc

PDGID = np.array([21, 1, 2, 3, 4, 5, -1, -2, -3, -4, -5], np.int32)
OUT = Path(__file__).resolve().parents[1] / "src/lvd/data/generate/pdf_table.npz"


def main() -> None:
    py = pythia8mc.Pythia("", False)
    for s in ("Print:quiet = on", "Beams:eCM = 13000.", "Top:gg2ttbar = on",
              "PartonLevel:all = off", "HadronLevel:all = off"):
        py.readString(s)
    py.init()
    pdf = py.getPDFPtr(2212)
    # tt̄ at 13 TeV needs x1·x2 ≥ (2·m_t)²/s ≈ 7e-4, and Q² = m_T² from ~(160 GeV)² upwards.
    log_x = np.linspace(np.log(2e-4), 0.0, 240)
    log_q2 = np.linspace(np.log(2.0e4), np.log(4.0e7), 24)
    xf = np.array([[[pdf.xf(int(i), float(np.exp(lx)), float(np.exp(lq))) for lx in log_x]
                    for lq in log_q2] for i in PDGID])
    xf[:, :, -1] = 0.0  # x = 1 exactly: nothing left
    np.savez(OUT, log_x=log_x, log_q2=log_q2, xf=xf.astype(np.float32), pdgid=PDGID,
             alphas_mz=np.float64(0.130), name=np.str_("NNPDF23_lo_as_0130_qed (Pythia 8.317 default)"))
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
