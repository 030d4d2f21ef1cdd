"""Plain-text tables: the one renderer of the profiler's and the benchmark's reports.

>>> print(render_table(["method", "ms"], [["full", "10.7"], ["clora", "6.5"]]))
method    ms
------  ----
full    10.7
clora    6.5
"""

from __future__ import annotations

from collections.abc import Collection, Sequence


def render_table(
    header: Sequence[object],
    rows: Sequence[Sequence[object]],
    *,
    left_columns: int = 1,
    header_rule: bool = True,
    rules_before: Collection[int] = (),
) -> str:
    """Columns padded to their widest cell and joined by two spaces.

    Args:
        header: the column titles.
        rows: the body, one sequence of cells (printed with ``str``) per row, as long as ``header``.
        left_columns: how many leading columns are left-aligned (names); the others are
            right-aligned (figures).
        header_rule: a dashed line under the header.
        rules_before: indices into ``rows`` that get a dashed line above them (e.g. the first
            published row under the measured ones).

    Returns:
        The lines joined by newlines, trailing spaces removed, no final newline.
    """
    table = [[str(cell) for cell in header]] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.ljust(width) if index < left_columns else cell.rjust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    rule = line(["-" * width for width in widths])
    lines = [line(table[0])]
    if header_rule:
        lines.append(rule)
    for index, row in enumerate(table[1:]):
        if index in rules_before:
            lines.append(rule)
        lines.append(line(row))
    return "\n".join(lines)
