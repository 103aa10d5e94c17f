"""Checkpoint readers and key layouts."""
