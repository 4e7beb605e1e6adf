"""Training: optimisers and the initial state, the jitted step, the hooks (checkpoints, logs) and the loop."""
