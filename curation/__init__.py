"""curation: the data rooms — config, store, ingest, languages, embeddings, index, export.

This package imports none of the steps that use it (selection, labeling, training, the CLI's
commands beyond its own), so every step can rely on it without cycles.
"""

__version__ = "0.1.0"
