"""Bar sources: the Source protocol, bundled real data, the landing folder parser and live connectors."""
