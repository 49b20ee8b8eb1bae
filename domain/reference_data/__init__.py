"""Bundled reference data (CSV files and their sources), read by :mod:`domain.reference`.

A package, not a plain folder, so that the files travel with every kind of install
(editable, wheel) and are found with :mod:`importlib.resources`.
"""
