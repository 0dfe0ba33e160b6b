"""Live-video relay for fire-brigade drones."""

__version__ = "0.1.0"
