"""The app's pages, one module each; each has ``show(settings)``."""
