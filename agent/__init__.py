"""edge-agent: sees and hears in the same moment, and only then speaks up."""

__version__ = "0.1.0"
