"""Evaluation: physics observables, distances, calibration, plots and reports (docs/design.md §6)."""
