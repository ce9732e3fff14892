"""Per-frame annotations a scripted expert records beside its demo frames: privileged labels of what
it is doing (dense annotations for co-training and auxiliary targets, and for diagnosing demos).
Defined in ``sim`` because the experts produce them."""

# The grasp a scripted expert is executing: the tcp target position and the jaw yaw as
# (cos 2 yaw, sin 2 yaw), the jaw being symmetric under a half turn.
GRASP_ANNOTATION = "annotation.grasp"
GRASP_NAMES = ("x", "y", "z", "cos2yaw", "sin2yaw")
