"""Input/output: atomic writes, run directories, results."""
