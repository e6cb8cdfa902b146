"""dlcourse: config-driven PyTorch training for deep-learning courses."""
__version__ = "0.1.0"
