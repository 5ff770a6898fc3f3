"""Stage runners: verl command lines, the subprocess runner, CPU settings and pipelines."""
