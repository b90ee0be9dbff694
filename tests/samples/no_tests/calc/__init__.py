"""A tiny calculator."""


def add(left, right):
    """Sum of two numbers."""
    return left + right
