"""The baselines the paper compares LVD with, on the same interface (see docs/design.md)."""

from lvd.models.baselines.cinn import CINN
from lvd.models.baselines.cvae import CVAE
from lvd.models.baselines.ldm import LDM, VAE
from lvd.models.baselines.vdm import VDM

__all__ = ["CINN", "CVAE", "LDM", "VAE", "VDM"]
