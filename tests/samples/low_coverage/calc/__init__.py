"""Sign of a number, in words."""


def sign(value):
    """'positive', 'negative' or 'zero'."""
    if value > 0:
        word = "positive"
    elif value < 0:
        word = "negative"
    else:
        word = "zero"
    return word


def describe(values):
    """The sign of each value, comma separated."""
    words = [sign(value) for value in values]
    return ", ".join(words)


def loudest(values):
    """The largest magnitude."""
    best = None
    for value in values:
        if best is None or abs(value) > abs(best):
            best = value
    return best
