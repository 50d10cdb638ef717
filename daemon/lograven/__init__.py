"""lograven: learns what a host's logs normally look like and says when something unusual happens."""

__version__ = "0.3.0"
