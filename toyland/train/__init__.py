"""Training: the one trainer behind ``toyland train`` and its checkpointed state."""
