"""The proton PDF table shipped with lvd (made by ``scripts/make_pdf_table.py``) and LO running αs."""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np

M_Z = 91.1876


class PdfTable:
    """Bilinear interpolation of ``x·f(x, Q²)`` in ``(log x, log Q²)`` for all 11 parton ids at once."""

    def __init__(self, log_x: np.ndarray, log_q2: np.ndarray, xf: np.ndarray, pdgid: np.ndarray,
                 alphas_mz: float, name: str):
        self.log_x, self.log_q2 = log_x.astype(np.float64), log_q2.astype(np.float64)
        self.xf = xf.astype(np.float64)  # [11, NQ, Nx]
        self.pdgid = [int(i) for i in pdgid]
        self.alphas_mz = float(alphas_mz)
        self.name = name
        self._dx = self.log_x[1] - self.log_x[0]
        self._dq = self.log_q2[1] - self.log_q2[0]
        # Flattened [NQ*Nx, 11] so that one gather per corner fetches every flavour.
        # float32 halves the memory traffic of the gathers; the table itself is float32.
        self._flat = np.ascontiguousarray(self.xf.reshape(len(self.pdgid), -1).T, dtype=np.float32)

    def index(self, pdgid: int) -> int:
        return self.pdgid.index(pdgid)

    def xf_all(self, x: np.ndarray, q2: np.ndarray) -> np.ndarray:
        """``x·f_i(x, Q²)`` (float32, the table's precision) for every parton id, ``[n], [n] -> [n, 11]``;
        clamped to the table's Q² range."""
        nx, nq = len(self.log_x), len(self.log_q2)
        u = np.clip((np.log(x) - self.log_x[0]) / self._dx, 0.0, nx - 1 - 1e-9)
        v = np.clip((np.log(q2) - self.log_q2[0]) / self._dq, 0.0, nq - 1 - 1e-9)
        iu, iv = u.astype(np.intp), v.astype(np.intp)
        fu, fv = u - iu, v - iv
        # the four corners of each point's cell in one gather, weighted in one batched product
        # (np.take is several times faster than fancy indexing for this row gather)
        corners = np.take(self._flat, (iv * nx + iu)[:, None] + np.array([0, 1, nx, nx + 1]), axis=0)  # [n, 4, 11]
        w = np.stack([(1 - fu) * (1 - fv), fu * (1 - fv), (1 - fu) * fv, fu * fv], axis=1).astype(np.float32)
        return np.einsum("nc,ncf->nf", w, corners)

    def alphas(self, q2: np.ndarray) -> np.ndarray:
        """One-loop running αs with five flavours, matching the table's αs(M_Z)."""
        b0 = (33.0 - 2.0 * 5) / (12.0 * np.pi)
        return self.alphas_mz / (1.0 + b0 * self.alphas_mz * np.log(q2 / M_Z**2))


@functools.cache
def default_pdf() -> PdfTable:
    """The table shipped as package data."""
    ref = resources.files("lvd.data.generate").joinpath("pdf_table.npz")
    with resources.as_file(ref) as path, np.load(path, allow_pickle=False) as d:
        return PdfTable(d["log_x"], d["log_q2"], d["xf"], d["pdgid"], float(d["alphas_mz"]), str(d["name"]))
