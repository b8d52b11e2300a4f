"""One router per resource: analyses, models, health (with metrics)."""
