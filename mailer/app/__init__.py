"""The use cases: each command composed from the core, the loader and the shell."""
