"""Per-frame annotations a scripted expert records beside its demo frames (targets for auxiliary losses).

Defined in ``sim`` because the experts produce them; ``toyland.data`` re-exports them for the dataset schema.
"""

# The grasp a scripted expert is executing: the tcp target position and the jaw yaw as
# (cos 2 yaw, sin 2 yaw), the jaw being symmetric under a half turn.
GRASP_ANNOTATION = "annotation.grasp"
GRASP_NAMES = ("x", "y", "z", "cos2yaw", "sin2yaw")
