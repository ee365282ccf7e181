"""training: LoRA adapter fine-tuning on curated data with per-language early stopping.

Reads and writes the store through `curation`; never imports `labeling`. Not built yet: see the
training issue.
"""
