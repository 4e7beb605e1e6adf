"""The baselines the paper compares LVD with, on the same interface (DESIGN 3)."""

from lvd.models.baselines.cinn import CINN
from lvd.models.baselines.cvae import CVAE
from lvd.models.baselines.ldm import LDM, VAE
from lvd.models.baselines.vdm import VDM

BASELINES = {"vdm": VDM, "ldm": LDM, "vae": VAE, "cvae": CVAE, "cinn": CINN}
