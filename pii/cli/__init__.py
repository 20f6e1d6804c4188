"""The `lethe` command line: argument parsing and printing over the engine. Imported by no library module.
"""
