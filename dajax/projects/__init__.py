"""Studies built on dajax that the core does not depend on; each sub-package is one study
with its own config in `configs/` and its own page in `docs/`."""
