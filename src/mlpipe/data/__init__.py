"""Data: the dataset spec, sources, tables, drift, splitting, and the data kinds (`kinds/`)."""
