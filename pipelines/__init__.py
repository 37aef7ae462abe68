"""earmark's Apache Beam pipelines (`prepare`, later `label`) and their transforms."""
