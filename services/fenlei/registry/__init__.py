"""The model registry: versions with lineage, aliases with history, experiments, backup and restore."""
