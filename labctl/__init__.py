"""labctl: provision, configure and verify the network-programming echo lab."""
