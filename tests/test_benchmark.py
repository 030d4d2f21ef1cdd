"""tools/benchmark.py end to end on a tiny Point-MAE, and the pieces that are not timings.

No test here asserts a timing: the figures are checked for presence and shape, the lean-path
facts (no gradients for frozen weights, optimizer state only for trained tensors, frozen patch
embedding without autograd) and the SADE values for equality with the dense reference.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from backbones.errors import ConfigError
from pcclora.benchmark import METHODS, BenchmarkError, BenchmarkSettings, evaluate_targets, format_report
from pcclora.benchmark.contention import busy_processes
from pcclora.benchmark.sections import bench_tokenizer, environment_info
from pcclora.benchmark.steps import build_model, randomize_adapters
from pcclora.peft.sade import sade_loss_dense, sade_loss_dense_macs

ROOT = Path(__file__).resolve().parents[1]
TINY = {"trans_dim": 32, "depth": 2, "num_heads": 2, "num_group": 16, "group_size": 8, "encoder_dims": 32}
#: the peers' official options that do not fit the tiny model
TINY_PEFT = ["peft.idpt.prompt_layer=1", "peft.idpt.dgcnn_k=8", "peft.pointgst.local=8", "peft.pointgst.rank=4"]
TINY_ARGS = ["--set", *(f"{k}={v}" for k, v in TINY.items()), *TINY_PEFT, "--num-points", "256", "--batch-size", "2"]


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "benchmark.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def tiny_report() -> dict:
    """Every section but memory, all methods; memory (a fresh process per method) for two methods."""
    quick = ["--repeats", "1", "--warmup", "0", "--threads", "1", "--json"]
    done = run_tool(*TINY_ARGS, *quick, "--only", "train", "infer", "tokenizer", "sade")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    done = run_tool(*TINY_ARGS, *quick, "--only", "memory", "--methods", "clora")
    assert done.returncode == 0, done.stderr
    report["memory"] = json.loads(done.stdout)["memory"]
    return report


def test_json_report_has_every_section_and_method(tiny_report):
    assert set(tiny_report) >= {"settings", "environment", "train", "memory", "infer", "tokenizer", "sade", "targets"}
    for method in METHODS:
        step = tiny_report["train"][method]["step"]
        assert step["median_s"] > 0 and len(step["runs_s"]) == 1
    memory = tiny_report["memory"]["clora"]
    for figures in (memory, memory["default_malloc"]):
        assert figures["kind"] == "cpu_peak_rss"
        assert figures["peak_absolute_mib"] >= figures["after_build_mib"] >= figures["after_imports_mib"] > 0
    for name in ("plain", "clora_unmerged", "clora_merged"):
        assert tiny_report["infer"][name]["median_s"] > 0
    assert tiny_report["tokenizer"]["torch"]["available"] is True
    assert "available" in tiny_report["tokenizer"]["pytorch3d"]
    assert len(tiny_report["targets"]) == 9
    assert {t["status"] for t in tiny_report["targets"]} <= {"met", "missed", "n/a"}


def test_sade_through_gram_matrices_equals_the_dense_form(tiny_report):
    sade = tiny_report["sade"]
    assert sade["value_gram_float64"] > 0
    assert sade["rel_diff_float64"] <= 1e-9
    assert sade["value_gram"] == pytest.approx(sade["value_dense"], rel=1e-5)
    assert sade["flops_dense"] > sade["flops_gram"] > 0


def test_lean_training_path_keeps_nothing_for_frozen_weights(tiny_report):
    for method in METHODS:
        lean = tiny_report["train"][method]["lean"]
        assert lean["frozen_params_with_grad"] == 0, method
        assert lean["optimizer_state_numel"] == 2 * lean["trainable_params"], method  # AdamW: 2 moments
        assert lean["sdpa_attention"] is True
    assert tiny_report["train"]["full"]["lean"]["patch_embedding_grad_enabled"] is True
    for method in ("linear", "lora", "clora", "clora+sade"):
        assert tiny_report["train"][method]["lean"]["patch_embedding_grad_enabled"] is False, method
    clora, full = tiny_report["train"]["clora"]["lean"], tiny_report["train"]["full"]["lean"]
    assert clora["saved_activations_mib"] < full["saved_activations_mib"]


def test_merged_clora_gives_the_unmerged_logits(tiny_report):
    assert tiny_report["infer"]["merged_vs_unmerged_max_abs_logit_diff"] < 1e-4


def test_dense_sade_flops_match_the_analytic_count():
    settings = BenchmarkSettings(model=dict(TINY), num_points=256, batch_size=2)
    model, _ = build_model(settings, "clora")
    randomize_adapters(model, seed=0)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        sade_loss_dense(model, eps=1e-8)
    assert counter.get_total_flops() == 2 * sade_loss_dense_macs(model)


def test_targets_are_met_missed_or_not_measured():
    results = {
        "train": {
            m: {"step": {"median_s": s}}
            for m, s in {"full": 10.0, "lora": 5.0, "clora": 5.0, "clora+sade": 6.0}.items()
        },
        "memory": {"full": {"peak_mib": 1000.0}, "clora": {"peak_mib": 700.0}},
        "sade": {
            "flops_gram": 10,
            "flops_dense": 50_000,
            "rel_diff_float32": 0.0,
            "gram_forward_backward": {"median_s": 0.01},
        },
    }
    status = {
        t["target"].split(" <=")[0].split(" >=")[0]: (t["status"], t["measured"]) for t in evaluate_targets(results)
    }
    assert status["CLoRA+SADE step / full fine-tuning step"] == ("met", pytest.approx(0.6))
    assert status["CLoRA+SADE step / LoRA r=8 step"] == ("missed", pytest.approx(1.2))
    assert status["CLoRA peak training memory / full"] == ("missed", pytest.approx(0.7))
    assert status["SADE FLOPs dense / Gram"] == ("met", pytest.approx(5000))
    assert status["SADE (Gram, fwd+bwd) time / CLoRA step"] == ("met", pytest.approx(0.002))
    assert status["merged CLoRA latency / plain backbone"] == ("n/a", None)
    assert status["tokenizer torch time / pytorch3d time"] == ("n/a", None)


def test_bad_size_override_is_one_clear_message(capsys):
    spec = importlib.util.spec_from_file_location("benchmark_tool", ROOT / "tools" / "benchmark.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main(["--set", "widht=3", "--only", "tokenizer"]) == 2
    message = capsys.readouterr().err
    assert "--set takes KEY=VALUE" in message and "trans_dim" in message


def test_benchmark_errors_are_config_errors():
    assert issubclass(BenchmarkError, ConfigError)
    with pytest.raises(BenchmarkError, match="clora"):
        BenchmarkSettings(methods=("dora",)).check()


# ----------------------------------------------------------------------------------------------
# contention mode of the tokenizer section
# ----------------------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_busy_processes_run_during_the_block_and_are_stopped_after_it():
    with busy_processes(2) as pids:
        assert len(pids) == 2 and all(_alive(pid) for pid in pids)
    assert not any(_alive(pid) for pid in pids)


def test_busy_processes_are_stopped_when_the_block_fails():
    with pytest.raises(RuntimeError, match="measuring failed"), busy_processes(1) as pids:
        raise RuntimeError("measuring failed")
    assert not _alive(pids[0])


def test_tokenizer_section_times_quiet_and_busy_in_one_run():
    settings = BenchmarkSettings(
        model=dict(TINY), num_points=256, batch_size=2, repeats=2, warmup=0, sections=("tokenizer",), contention=1
    )
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        tok = bench_tokenizer(settings)
    finally:
        torch.set_num_threads(before)
    for figures in (tok, tok["contended"]):
        assert figures["torch"]["available"] is True and len(figures["torch"]["runs_s"]) == 2
        assert "available" in figures["pytorch3d"]
        assert set(figures["torch_threads"]) == {"1", "2"}
    assert tok["contended"]["busy_processes"] == 1
    report = format_report(
        {"settings": asdict(settings), "environment": environment_info(settings), "tokenizer": tok, "targets": []}
    )
    assert "while 1 busy-loop process spins" in report
    assert "torch, FPS loop on 1 thread" in report and "busy median ms" in report


@pytest.mark.parametrize(
    "overrides, message",
    [({"contention": -1}, "contention must be at least 0"), ({"sections": ("sade",), "contention": 1}, "tokenizer")],
)
def test_bad_contention_settings_are_benchmark_errors(overrides, message):
    with pytest.raises(BenchmarkError, match=message):
        BenchmarkSettings(**overrides).check()


def test_set_takes_the_same_syntax_as_the_other_tools():
    from pcclora.cli import benchmark as tool

    assert tool.parse_overrides(["backbone.depth=2", "trans_dim=32", "backbone.drop_path_rate=0"]) == {
        "depth": 2,
        "trans_dim": 32,
        "drop_path_rate": 0.0,
    }
    for bad, message in (("training.seed=1", "KEY a backbone size"), ("backbone.depth=2.5", "needs an integer")):
        with pytest.raises(BenchmarkError, match=message):
            tool.parse_overrides([bad])


def test_the_printed_report_ends_with_what_a_user_can_act_on(tiny_report):
    report = format_report(tiny_report)
    assert "\nTargets\n" not in report and not re.search(r"\b(met|missed|n/a)\b", report)
    assert "Choosing a method" in report and "merge the adapters before deployment" in report
