"""Core: typed configs (:mod:`.config`) and file/CLI helpers (:mod:`.io_utils`).

Imports nothing else from the pipeline; every other package may import it.
"""
