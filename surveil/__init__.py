"""surveil: real-time surveillance of programmatic trading on Chinese stock exchanges."""

__version__ = "0.1.0"
