"""Data sets, degradations and the embedded synthetic data set."""
