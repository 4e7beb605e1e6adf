"""Training: state and optimisers, the jitted step, checkpoints, and the loop."""
