"""``parrot stats``: datasets measured side by side (``stage`` is the command)."""
