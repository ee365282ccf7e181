"""`python -m curation.cli`."""

from curation.cli import main

main()
