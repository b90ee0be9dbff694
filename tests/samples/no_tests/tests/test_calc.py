from calc import add


def check_add():  # misnamed: pytest collects nothing here
    assert add(2, 3) == 5
