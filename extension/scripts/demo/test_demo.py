from demo import running_sum


def test_running_sum() -> None:
    assert running_sum([1, 2, 3, 4]) == [1, 3, 6, 10]


def test_running_sum_of_nothing() -> None:
    assert running_sum([]) == []
