"""Messages, wire format, channels and byte/time accounting. Knows roles, not models or data."""
