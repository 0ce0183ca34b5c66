"""Figures: the shared style (style.py) and one module per study."""
