from toyland.policies.vla.policy import VLAConfig, VLAPolicy

__all__ = ["VLAConfig", "VLAPolicy"]
