"""Profiling adapted models (un-merged and merged) and the ``tools/profile_flops.py`` command."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import backbones
import pcclora
from pcclora.profiling import count_compute, profile

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "profile_flops.py"

D, DEPTH, GROUPS, NPOINTS = 32, 2, 16, 128
TOKENS = GROUPS + 1  # cls token + one per group
RANK, BASES = 2, 3
TINY_SET = [
    f"backbone.trans_dim={D}",
    f"backbone.encoder_dims={D}",
    f"backbone.depth={DEPTH}",
    "backbone.num_heads=4",
    f"backbone.num_group={GROUPS}",
    "backbone.group_size=8",
    f"dataset.npoints={NPOINTS}",
    f"peft.rank={RANK}",
    f"peft.num_bases={BASES}",
]


def tiny_backbone():
    torch.manual_seed(0)
    return backbones.create_backbone(
        "point_mae",
        num_classes=15,
        trans_dim=D,
        encoder_dims=D,
        depth=DEPTH,
        num_heads=4,
        num_group=GROUPS,
        group_size=8,
    )


def adapted(method):
    return pcclora.apply_peft(tiny_backbone(), {"method": method, "rank": RANK, "num_bases": BASES})


@pytest.fixture(scope="module")
def points():
    return torch.rand(1, NPOINTS, 3)


@pytest.fixture(scope="module")
def backbone_count(points):
    return count_compute(tiny_backbone(), points)


# --------------------------------------------------------------------------------------------
# adapter compute, from the shapes (pcclora.peft.layers: x·D once per input for all p bases,
# block-diagonal r×r coefficients per split and base, then one (p·r → d_out) product per split)
# --------------------------------------------------------------------------------------------


def clora_macs_per_token(d, hidden, p, r):
    """(d_in, d_out, splits) of every target layer of a block; a fused qkv is three (d, d) layers."""
    layers = [(d, d, 3), (d, d, 1), (d, hidden, 1), (hidden, d, 1)]  # qkv, proj, fc1, fc2
    return sum(d_in * p * r + splits * p * r * r + splits * p * r * d_out for d_in, d_out, splits in layers)


def lora_macs_per_token(d, hidden, r):
    layers = [(d, d, 3), (d, d, 1), (d, hidden, 1), (hidden, d, 1)]
    return sum(d_in * splits * r + splits * r * d_out for d_in, d_out, splits in layers)


@pytest.mark.parametrize("method", ["clora", "clora_shared"])
def test_unmerged_clora_adds_exactly_the_adapter_multiply_adds(method, points, backbone_count):
    count = count_compute(adapted(method), points)
    extra = DEPTH * TOKENS * clora_macs_per_token(D, 4 * D, BASES, RANK)
    assert count.conv_linear - backbone_count.conv_linear == extra
    assert (count.attention, count.norm) == (backbone_count.attention, backbone_count.norm)


def test_unmerged_lora_adds_exactly_the_adapter_multiply_adds(points, backbone_count):
    count = count_compute(adapted("lora"), points)
    extra = DEPTH * TOKENS * lora_macs_per_token(D, 4 * D, RANK)
    assert count.conv_linear - backbone_count.conv_linear == extra


@pytest.mark.parametrize("method", ["clora", "clora_shared", "lora"])
def test_merged_adapters_cost_exactly_the_backbone(method, points, backbone_count):
    model = pcclora.merge_adapters(adapted(method))
    assert count_compute(model, points) == backbone_count


def test_profile_reports_parameters_and_compute(points, backbone_count):
    model = adapted("clora")
    stats = profile(model, points)
    params = pcclora.count_parameters(model)
    assert stats["params_total"] == params["total"]
    assert stats["params_trainable"] == params["trainable"]
    assert stats["breakdown"] == params["groups"]
    assert stats["macs_with_attention"] > backbone_count.macs_with_attention
    assert (stats["batch_size"], stats["npoints"]) == (1, NPOINTS)
    assert stats["tokenizer_flops_estimate"] > 0


def test_profile_is_exported_from_the_package():
    assert pcclora.profile is profile


# --------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("profile_flops_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def exit_code(tool, argv):
    """Run the command as its ``__main__`` does; return the exit code."""
    with pytest.raises(SystemExit) as exit_info:
        tool.run_tool(tool.main, argv)
    return exit_info.value.code


def test_json_is_one_object_per_method_with_raw_counts(tool, capsys, points, backbone_count):
    argv = ["--cfg", "scanobjectnn_hardest.yaml", "--method", "full", "clora", "--json", "--set", *TINY_SET]
    assert tool.main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    keys = ["method", "params_total", "params_trainable", "macs_conv_linear", "macs_with_attention", "flops", "merged"]
    assert [list(row) for row in rows] == [keys, keys]
    full, clora = rows
    assert (full["method"], clora["method"]) == ("full", "clora")
    assert full["merged"] is None
    assert full["macs_conv_linear"] == backbone_count.macs_conv_linear
    assert set(clora["merged"]) == {"params_total", "macs_conv_linear", "macs_with_attention", "flops"}
    assert clora["merged"]["macs_with_attention"] == full["macs_with_attention"]
    assert clora["merged"]["params_total"] == full["params_total"]
    assert clora["macs_conv_linear"] > full["macs_conv_linear"]
    assert clora["params_trainable"] < full["params_trainable"]


def test_table_lists_measured_merged_and_published_rows_and_latency(tool, capsys):
    argv = [
        "--cfg",
        "scanobjectnn_hardest",
        "--method",
        "linear",
        "lora",
        "--set",
        *TINY_SET,
        "--batch-sizes",
        "1",
        "2",
        "--warmup",
        "0",
        "--repeats",
        "1",
    ]
    assert tool.main(argv) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    measured = [line.split()[:2] for line in lines if line.split()[:1] in (["linear"], ["lora"])]
    assert measured[:3] == [["linear", "train"], ["lora", "train"], ["lora", "merged"]]
    for name in ("IDPT", "DAPT", "PointGST", "Point-PEFT", "full fine-tuning"):
        assert any(line.startswith(name) and "published" in line for line in lines), name
    assert "FPS + kNN tokenizer" in out
    assert "latency on cpu" in out and "lora (un-merged)" in out and "batch 2 samples/s" in out
    backbone_row = next(line for line in lines if line.startswith("backbone"))
    assert "linear, lora merged" in backbone_row


def test_no_published_leaves_the_published_rows_out(tool, capsys):
    argv = ["--cfg", "scanobjectnn_hardest", "--method", "linear", "--set", *TINY_SET, "--no-latency", "--no-published"]
    assert tool.main(argv) == 0
    assert "IDPT" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--cfg", "no_such_config"], "not found"),
        (["--cfg", "scanobjectnn_hardest", "--set", "backbone.num_grop=4"], "num_group"),
        (["--cfg", "scanobjectnn_hardest", "--set", *TINY_SET, "dataset.npoints=8"], "points"),
        (["--cfg", "scanobjectnn_hardest", "--repeats", "0"], "--repeats"),
    ],
)
def test_user_mistakes_exit_2_with_one_message(tool, capsys, argv, message):
    assert exit_code(tool, [*argv, "--no-latency"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message when CUDA is absent")
def test_cuda_without_a_device_exits_2(tool, capsys):
    assert exit_code(tool, ["--cfg", "scanobjectnn_hardest", "--device", "cuda"]) == 2
    assert "--device cpu" in capsys.readouterr().err


def test_unknown_method_is_refused_by_the_command_line(tool, capsys):
    assert exit_code(tool, ["--cfg", "scanobjectnn_hardest", "--method", "point_peft"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_the_script_runs_standalone_and_reports_errors_without_traceback():
    result = subprocess.run(
        [sys.executable, str(TOOL), "--cfg", "no_such_config", "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT.parent,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: config 'no_such_config' not found")
    assert result.stdout == ""
