"""Reads the program folder into core values, collecting every problem on the way."""
