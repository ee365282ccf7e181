"""labeling: the Label Studio bridge (push selected tasks, pull verified annotations, agreement).

Reads and writes the store through `curation`; never imports `training`. Not built yet: see the
labeling issue.
"""
