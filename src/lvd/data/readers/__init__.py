"""Readers of other people's event files: Delphes and CMS NanoAOD ROOT trees, SPANet-style HDF5.

Each writes a valid lvd event file: the detector-level objects through lvd's own lepton+jets selection
(:mod:`.selection`), the parton-level truth from the generator record's tt̄ decay chain (:mod:`.truth`),
streamed chunk by chunk (:mod:`.root`). The ROOT readers need the ``[hep]`` extra (uproot, awkward).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from lvd.errors import LvdError

HEP_EXTRA = "pip install 'lvd[hep]'"


def hep_module(name: str) -> ModuleType:
    """Import one of the ``[hep]`` extra's packages, or raise the one-line LvdError naming the extra."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise LvdError(f"this needs {name}, part of the [hep] extra: {HEP_EXTRA}") from None
