"""The commit a `git archive` of toyland was made from (.gitattributes marks this file export-subst,
so git fills it in). In a checkout it stays unfilled and the commit comes from git itself."""

COMMIT = "$Format:%h$"
