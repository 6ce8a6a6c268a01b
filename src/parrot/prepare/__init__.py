"""``parrot prepare``: real user-assistant logs (ShareGPT, messages) → cleaned Dialogue JSONL.

``stage`` is the command; ``sources`` reads the input formats; ``cleaning`` holds the rules."""
