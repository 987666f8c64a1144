"""Evaluation: the field's standard metrics, computed outside the graph from predictions."""
