"""The ``jarrn`` command and the facts every step shares (errors, exit codes). Imports nothing heavy."""
