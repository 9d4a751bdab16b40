"""The control plane: what each surface serves, how it changes, and the files that persist it."""
