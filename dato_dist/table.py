"""A small column table with GraphLab's (SFrame's) boxed printed form.

Used for job metrics and for the ``list()`` of the jobs and environments collections.
Cells longer than 30 characters are cut with ``...``; columns wrap into blocks of at most
80 characters. ``str()`` and ``print()`` show only a head (the first 10 rows, at most 40
columns), then the shape and a note pointing to ``print_rows``, as SFrame did; only the rows
shown are formatted, so printing a table of a million rows costs as much as one of ten.
:class:`LazyTable` (the metrics) makes its rows only when asked for.
"""

MAX_CELL = 30
MAX_LINE = 80
HEAD_ROWS = 10
HEAD_COLUMNS = 40
HEAD_NOTE = ("Note: Only the head of the table is printed.\n"
             "You can use print_rows(num_rows=m, num_columns=n) to print more rows and columns.")


def _cell(value):
    if value is None:
        return "None"
    if isinstance(value, float):
        text = "%.12g" % value
    else:
        text = str(value)
    text = text.replace("\n", "\\n")
    return text[: MAX_CELL - 4] + "..." if len(text) > MAX_CELL else text


def _center(text, width):
    pad = width - len(text)
    left = (pad + 1) // 2
    return " " * left + text + " " * (pad - left)


class Table:
    """Rows of named columns, printed like GraphLab's SFrame.

    Parameters
    ----------
    column_names : list of str
    rows : list of dict
        Each row maps every column name to its value.

    Examples
    --------
    >>> t = Table(["a", "b"], [{"a": 1, "b": "x"}])
    >>> t[0]["b"], len(t), t["a"]
    ('x', 1, [1])
    """

    def __init__(self, column_names, rows):
        self._columns = list(column_names)
        self._rows = [{c: row.get(c) for c in self._columns} for row in rows]

    # -- what a table provides (LazyTable makes these on demand) -------------------------
    def _len(self):
        return len(self._rows)

    def _row(self, i):
        """Row ``i`` (0 <= i < len) as a new dict."""
        return dict(self._rows[i])

    def _column(self, name):
        return [r[name] for r in self._rows]

    # -- the public face -------------------------------------------------------------------
    @property
    def column_names(self):
        return list(self._columns)

    @property
    def num_rows(self):
        return self._len()

    @property
    def num_columns(self):
        return len(self._columns)

    def __len__(self):
        return self._len()

    def __iter__(self):
        return map(self._row, range(self._len()))

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self._columns:
                raise KeyError(f"No column '{key}'; columns: {', '.join(self._columns)}")
            return self._column(key)
        if isinstance(key, slice):
            return [self._row(i) for i in range(self._len())[key]]
        n = self._len()
        if not -n <= key < n:
            raise IndexError(f"row {key} out of range: the table has {n} rows")
        return self._row(key % n)

    def to_pylist(self):
        """The rows as a list of dicts."""
        return list(self)

    def to_arrow(self):
        """The table as a ``pyarrow.Table``."""
        import pyarrow as pa

        if not self._len():
            return pa.table({c: pa.array([], pa.null()) for c in self._columns})
        return pa.table({c: self._column(c) for c in self._columns})

    def to_pandas(self):
        """The table as a ``pandas.DataFrame`` (needs pandas)."""
        import pandas as pd

        return pd.DataFrame({c: self._column(c) for c in self._columns},
                            columns=self._columns)

    to_dataframe = to_pandas

    def _blocks(self, rows, columns):
        """The boxed lines of ``rows`` (only these are formatted), wrapped at 80 characters."""
        cells = {c: [_cell(r[c]) for r in rows] for c in columns}
        widths = {c: max([len(c)] + [len(x) for x in cells[c]]) + 2 for c in columns}
        blocks, current, line = [], [], 1
        for c in columns:
            if current and line + widths[c] + 1 > MAX_LINE:
                blocks.append(current)
                current, line = [], 1
            current.append(c)
            line += widths[c] + 1
        if current:
            blocks.append(current)
        out = []
        for cols in blocks:
            rule = "+" + "+".join("-" * widths[c] for c in cols) + "+"
            out.append(rule)
            out.append("|" + "|".join(_center(c, widths[c]) for c in cols) + "|")
            out.append(rule)
            for i in range(len(rows)):
                out.append("|" + "|".join(_center(cells[c][i], widths[c]) for c in cols) + "|")
            out.append(rule)
        return out

    def format(self, num_rows=HEAD_ROWS, num_columns=HEAD_COLUMNS):
        """The printed form of the first ``num_rows`` rows and ``num_columns`` columns.

        Then the line ``[R rows x C columns]`` (the whole table's shape) and, when rows or
        columns were left out, a note naming ``print_rows``. Only the rows shown are
        formatted. A table that fits prints exactly as GraphLab's SFrame printed it.
        """
        num_rows, num_columns = max(0, int(num_rows)), max(0, int(num_columns))
        columns = self._columns[:num_columns]
        shown = [self._row(i) for i in range(min(num_rows, self._len()))]
        lines = self._blocks(shown, columns) if columns else []
        lines.append(f"[{self.num_rows} rows x {self.num_columns} columns]")
        if self.num_rows > len(shown) or self.num_columns > len(columns):
            lines.append(HEAD_NOTE)
        return "\n".join(lines)

    def print_rows(self, num_rows=HEAD_ROWS, num_columns=HEAD_COLUMNS):
        """Print the first ``num_rows`` rows and ``num_columns`` columns (SFrame's
        ``print_rows``); ``print(table)`` is ``print_rows()``."""
        print(self.format(num_rows, num_columns))

    def __str__(self):
        return self.format()

    __repr__ = __str__


class LazyTable(Table):
    """A :class:`Table` whose rows are made only when asked for: by index, iteration,
    the printed head, a column or a conversion. ``row(i)`` returns row ``i``
    (``0 <= i < num_rows``) as a dict; ``column(name)``, if given, a whole column faster.

    Examples
    --------
    >>> t = LazyTable(["i", "sq"], 10**9, lambda i: {"i": i, "sq": i * i})
    >>> len(t), t[-1]["sq"]
    (1000000000, 999999998000000001)
    """

    def __init__(self, column_names, num_rows, row, column=None):
        self._columns = list(column_names)
        self._n, self._make_row = num_rows, row
        self._make_column = column

    def _len(self):
        return self._n

    def _row(self, i):
        return self._make_row(i)

    def _column(self, name):
        if self._make_column is not None:
            return self._make_column(name)
        return [self._make_row(i)[name] for i in range(self._n)]
