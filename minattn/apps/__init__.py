"""Applications of attention (the course's second part), one module per application.

Import the module you need, e.g. ``from minattn.apps import hopfield``.
"""
