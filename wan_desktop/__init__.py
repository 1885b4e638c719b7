"""Wan Desktop: a desktop studio for the Wan2.2 video models on your own GPU."""

__version__ = "0.1.0"
