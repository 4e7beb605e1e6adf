"""Networks and objectives: LVD and the baselines (VDM, LDM, CVAE, CINN) on one shared interface."""
