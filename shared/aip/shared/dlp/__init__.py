"""Data loss prevention: secret patterns, the scanner, the JSON-leaf walker, and the redactor built
on them.
"""
