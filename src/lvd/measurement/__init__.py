"""Measurements: what a physicist makes from unfolded events (the K posterior draws per event of an unfolded
file) and publishes. Binned distributions with their stat/posterior/model covariance (``histogram``) and their
ROOT/HEPData/CSV output (``publish``), closure of those against a simulated truth (``closure``), the top mass
(``top_mass``), iterative reweighting away from the training prior (``reweight``), and the observables they are
made in (``observables``). Differential cross sections and efficiency/fake corrections belong here too.

Judging a model (distances, calibration of the posteriors, the ``lvd evaluate`` report) is
:mod:`lvd.evaluation`, which builds on this package; nothing here imports it.
"""
