"""Trained agents the server loads (the manifest training writes)."""
