"""The one plain-text table renderer of the profiler's and the benchmark's reports."""

from __future__ import annotations

from pcclora.tables import render_table


def test_names_left_figures_right_and_a_rule_under_the_header():
    text = render_table(["method", "ms"], [["full", "10.7"], ["clora", 6.5]])
    assert text.splitlines() == ["method    ms", "------  ----", "full    10.7", "clora    6.5"]


def test_left_columns_rules_before_rows_and_no_trailing_spaces():
    text = render_table(
        ["method", "model", "GMACs"],
        [["lora", "train", "0.121"], ["IDPT", "published", "7.10"]],
        left_columns=2,
        header_rule=False,
        rules_before={1},
    )
    assert text.splitlines() == [
        "method  model      GMACs",
        "lora    train      0.121",
        "------  ---------  -----",
        "IDPT    published   7.10",
    ]
    assert all(line == line.rstrip() for line in text.splitlines())
