from calc import sign


def test_positive():
    assert sign(3) == "positive"
