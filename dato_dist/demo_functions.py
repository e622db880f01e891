"""The functions of the user guide's examples, importable so the demo's jobs can run them."""


def add(x, y):
    return x + y


def add_combiner(**kwargs):
    return sum(kwargs.values())
