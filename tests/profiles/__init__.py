"""Profiles: model, limits, validation, form (unit); API, form and LocalProcessSpawner through a real hub."""
