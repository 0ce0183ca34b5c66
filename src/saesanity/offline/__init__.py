"""Offline sources: every downloaded file pinned in one data file (pins.yaml), fetched and
checked by one module (fetch.py)."""
