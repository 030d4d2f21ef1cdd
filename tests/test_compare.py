"""tools/compare.py: methods × seeds through the engine, resumable, one table; clear errors."""

from __future__ import annotations

import csv
import json

import pytest

from backbones.errors import ConfigError, UnknownNameError
from pcclora.cli import compare as compare_cli
from pcclora.comparison import CSV_COLUMNS, ComparisonSettings, run_comparison

#: the peers' official options that do not fit the tiny backbone (16 groups of 8, 64 points, depth 2)
TINY_PEFT = ["peft.idpt.prompt_layer=1", "peft.idpt.dgcnn_k=8", "peft.pointgst.local=8"]


@pytest.fixture(scope="module")
def scan_root(tmp_path_factory, write_scanobjectnn):
    return write_scanobjectnn(tmp_path_factory.mktemp("scan") / "ScanObjectNN")


def _settings(scan_root, output, tiny_overrides, methods=("clora", "idpt", "pointgst"), seeds=(0, 1), **extra):
    return ComparisonSettings(
        config="scanobjectnn_hardest",
        methods=list(methods),
        seeds=list(seeds),
        output=output,
        overrides=[*tiny_overrides(scan_root), *TINY_PEFT],
        log=lambda message: None,
        **{"measure": False, **extra},
    )


def test_every_method_and_seed_runs_and_one_table_is_written(scan_root, tmp_path, tiny_overrides):
    output = tmp_path / "cmp"
    rows = run_comparison(_settings(scan_root, output, tiny_overrides))
    assert [row["method"] for row in rows] == ["clora", "idpt", "pointgst"]
    for method in ("clora", "idpt", "pointgst"):
        for seed in (0, 1):
            summary = json.loads((output / method / f"seed{seed}" / "summary.json").read_text())
            assert (summary["method"], summary["seed"], summary["status"]) == (method, seed, "finished")
    written = list(csv.DictReader(open(output / "comparison.csv")))
    assert list(written[0]) == list(CSV_COLUMNS) and len(written) == 3
    assert {row["runs_finished"] for row in written} == {"2"}
    idpt = next(row for row in rows if row["method"] == "idpt")
    assert idpt["params_trainable"] > 0 and idpt["gmacs_conv_linear_merged"] is None and idpt["step_ms"] is None
    clora = next(row for row in rows if row["method"] == "clora")
    assert clora["gmacs_conv_linear_merged"] < clora["gmacs_conv_linear"]
    report = (output / "comparison.md").read_text()
    assert "| method | trainable |" in report and "best-epoch-on-test" in report and "synthetic" in report
    assert (output / "comparison.png").stat().st_size > 0


def test_a_second_call_skips_finished_runs_and_resumes_interrupted_ones(scan_root, tmp_path, tiny_overrides):
    output = tmp_path / "cmp"
    settings = _settings(scan_root, output, tiny_overrides, methods=("clora", "linear"), seeds=(0,))
    run_comparison(settings)
    summary_path = output / "linear" / "seed0" / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["status"] = "interrupted"
    summary_path.write_text(json.dumps(summary))
    before = (output / "clora" / "seed0" / "log.txt").read_text()
    messages: list[str] = []
    settings.log = messages.append
    run_comparison(settings)
    assert (output / "clora" / "seed0" / "log.txt").read_text() == before
    assert any("clora/seed0: done (finished), skipped" in m for m in messages)
    assert any("linear/seed0: resuming" in m for m in messages)
    assert json.loads(summary_path.read_text())["status"] == "finished"


def test_a_folder_holding_another_config_is_refused(scan_root, tmp_path, tiny_overrides):
    output = tmp_path / "cmp"
    run_comparison(_settings(scan_root, output, tiny_overrides, methods=("linear",), seeds=(0,)))
    other = _settings(scan_root, output, tiny_overrides, methods=("linear",), seeds=(0,))
    other.overrides = [*other.overrides, "optimizer.lr=0.001"]
    with pytest.raises(ConfigError, match=r"linear/seed0 holds a run of another config \(differs in optimizer.lr\)"):
        run_comparison(other)


def test_measurements_are_side_by_side_and_reused(scan_root, tmp_path, tiny_overrides):
    output = tmp_path / "cmp"
    settings = _settings(scan_root, output, tiny_overrides, methods=("full", "clora"), seeds=(0,), measure=True)
    settings.repeats, settings.warmup, settings.threads = 1, 0, 1
    rows = run_comparison(settings)
    full, clora = rows
    assert full["step_x_full"] == pytest.approx(1.0) and clora["step_ms"] > 0 and clora["peak_mib"] > 0
    assert clora["peak_x_full"] is not None
    saved = json.loads((output / "measurements.json").read_text())
    messages: list[str] = []
    settings.log = messages.append
    run_comparison(settings)
    assert any("reusing the measurements" in m for m in messages)
    assert json.loads((output / "measurements.json").read_text()) == saved


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"methods": ["clora", "pointlroa"]}, UnknownNameError, r"unknown peft method 'pointlroa'.*'pointlora'"),
        ({"seeds": [0, 0]}, ConfigError, r"seed\(s\) \[0\] given twice"),
        ({"seeds": [-1]}, ConfigError, r"seeds must be integers >= 0"),
        ({"methods": []}, ConfigError, r"at least one method"),
        ({"repeats": 0}, ConfigError, r"--repeats >= 1"),
    ],
)
def test_bad_settings_are_refused_before_anything_runs(scan_root, tmp_path, tiny_overrides, change, error, message):
    settings = _settings(scan_root, tmp_path / "cmp", tiny_overrides)
    for key, value in change.items():
        setattr(settings, key, value)
    with pytest.raises(error, match=message):
        run_comparison(settings)
    assert not (tmp_path / "cmp").exists()


def test_an_option_that_does_not_fit_one_method_names_it(scan_root, tmp_path, tiny_overrides):
    settings = _settings(scan_root, tmp_path / "cmp", tiny_overrides)
    settings.overrides = [*settings.overrides, "peft.idpt.cls_type=everything"]
    with pytest.raises(UnknownNameError, match=r"peft.idpt.cls_type 'everything'.*in the config of method"):
        run_comparison(settings)
    assert not (tmp_path / "cmp").exists()


def test_the_command_exits_2_with_one_line_on_a_mistake(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        compare_cli.run_tool(
            compare_cli.main, ["--cfg", "demo", "--methods", "clora", "dapt2", "--output", str(tmp_path)]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown peft method 'dapt2'") and len(err.strip().splitlines()) == 1
