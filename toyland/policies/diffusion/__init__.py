from toyland.policies.diffusion.policy import DiffusionConfig, DiffusionPolicy

__all__ = ["DiffusionConfig", "DiffusionPolicy"]
