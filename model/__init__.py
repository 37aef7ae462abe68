"""earmark's model contract: feature frontend, bases, head, training and export.

Nothing in this package imports Apache Beam: training runs where Beam is absent.
"""
