"""tracker: monitoring and therapy-tracking scheduler for systemic atopic-dermatitis treatment."""

__version__ = "0.1.0"
