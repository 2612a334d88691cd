"""Child networks: datasets, builders, and the training and evaluation loops (depends on torch only)."""
