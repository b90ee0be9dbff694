from calc import greet


def test_greet():
    assert greet("ann") == "hello ann"


def test_greet_shouts():
    assert greet("bob") == "HELLO BOB"
