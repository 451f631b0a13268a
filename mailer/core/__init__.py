"""The pure core: values and functions with no clock, no files, no network and no SQLite."""
