"""Workflows over the Classifier: optimize, compare, distill, batch APIs, batch labelling."""
