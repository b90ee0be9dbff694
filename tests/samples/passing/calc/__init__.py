"""A tiny calculator."""


def add(left, right):
    """Sum of two numbers."""
    return left + right


def scale(value, factor=2):
    """Value times factor."""
    return value * factor
