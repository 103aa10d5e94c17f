"""Evaluation: metrics, alignment protocols, the evaluation stage (readers: `dajax.data`)."""
