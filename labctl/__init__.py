"""labctl: provision, configure and verify the network-programming echo lab."""

__version__ = "0.1.0"
