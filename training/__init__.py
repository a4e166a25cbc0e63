"""Q-Face training: datasets, losses, metrics and the training loop (not needed for inference)."""
