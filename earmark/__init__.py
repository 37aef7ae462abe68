"""earmark: label sound events in large audio collections by transfer learning."""
__version__ = "0.1.0"
