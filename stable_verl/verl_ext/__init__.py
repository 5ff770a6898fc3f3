"""Everything that plugs into verl and vLLM, loaded in every process through entry points."""
