"""masd: messaging gateway daemon (mobile agent server)."""

__version__ = "0.1.0"
