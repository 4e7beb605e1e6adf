"""Evaluation: physics observables, distances, calibration, plots and reports (DESIGN 5)."""
