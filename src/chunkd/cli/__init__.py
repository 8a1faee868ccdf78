"""The ``chunkd`` command line."""
