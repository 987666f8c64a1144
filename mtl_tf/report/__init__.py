"""Figures people would rather look at than read: curves and prediction overlays."""
