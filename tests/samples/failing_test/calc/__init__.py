"""Greetings."""


def greet(name):
    """A greeting for name."""
    return f"hello {name}"
