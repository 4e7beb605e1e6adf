"""Evaluation: distances, calibration, classifier test, plots and reports (docs/design.md §6); the observables
and closure statistics it reports come from :mod:`lvd.measurement`."""
