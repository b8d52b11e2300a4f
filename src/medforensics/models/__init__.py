"""Shipped model weights and calibration files (read with importlib.resources)."""
