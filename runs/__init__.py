"""Runs: the results store, the search loop, executors, the CLI and plots."""
