"""Studies: datasets -> arms (several training seeds) -> suites -> one report, resumable."""

from toyland.study.driver import Study, StudyConfigError, study_names

__all__ = ["Study", "StudyConfigError", "study_names"]
