"""Event data: the file format, its validation, generators and converters."""
