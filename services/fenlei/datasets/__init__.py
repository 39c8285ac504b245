"""Datasets: labelled corpora validated on upload, stored once by their content, read back in batches."""
