"""Event generators: the embedded toy and Pythia 8 + FastJet, sharing one parametric detector."""
