"""Shared library of the pipeline: everything more than one step (or main.py) needs."""
