"""Evaluation: metrics, alignment protocols, benchmark readers."""
