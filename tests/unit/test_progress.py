from covidtech.progress import bar


def test_bar_fills_in_proportion_and_clamps() -> None:
    assert bar(0, 10, width=10) == "[----------]   0%"
    assert bar(5, 10, width=10) == "[#####-----]  50%"
    assert bar(10, 10, width=10) == "[##########] 100%"
    assert bar(15, 10, width=10) == "[##########] 100%"
    assert bar(0, 0, width=4) == "[####] 100%"
