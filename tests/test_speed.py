"""facenar.speed: --compile (train, search supernet, verify) with its eager fallback, and channels_last.

The fast tests replace torch.compile's backend (a graph-counting one, or one that fails) so no C++ is
built; the slow one compiles for real with inductor and states the tolerance eager and compiled meet.
"""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

import facenar.speed as speed
from facenar.checkpoint import load_checkpoint
from facenar.space.arch import Arch
from facenar.space.networks import build_child
from facenar.space.supernet import Supernet
from facenar.train.cli import main
from facenar.verify.embed import TorchEmbedder

TINY = ["--backbone", "iresnet18", "--width", "0.0625", "--input-size", "32", "--embedding-size", "32",
        "--batch-size", "48", "--epochs", "2", "--workers", "0", "--device", "cpu", "--log-every", "1",
        "--checkpoint-every", "100", "--lr", "0.05", "--bench", ""]
# compiled vs eager after a few SGD steps: fused kernels reorder float sums, nothing more
RTOL, ATOL = 1e-3, 1e-4


def _train(data, out, *extra):
    assert main(["--data", str(data), "--out", str(out), *TINY, *extra]) == 0
    return load_checkpoint(out / "last.pt")


def _warnings(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: --")]


def _tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return build_child(Arch.baseline("iresnet18", width=0.0625, input_size=32, embedding_size=16))


def test_compile_failure_falls_back_to_eager_with_one_warning_line(tiny_demo, tmp_path, monkeypatch, capsys):
    eager = _train(tiny_demo, tmp_path / "eager", "--max-steps", "2")
    capsys.readouterr()

    def broken(module, **kwargs):
        def run(*args, **kw):
            raise RuntimeError("inductor exploded\nwith a second line")
        return run

    monkeypatch.setattr(speed.torch, "compile", broken)
    compiled = _train(tiny_demo, tmp_path / "compiled", "--max-steps", "2", "--compile")
    lines = _warnings(capsys)
    assert len(lines) == 1 and "RuntimeError: inductor exploded" in lines[0] and "eager" in lines[0]
    for name, value in eager["model"].items():  # the failed try left nothing behind
        assert torch.equal(compiled["model"][name], value), name


def test_missing_cxx_compiler_is_one_warning_and_eager(monkeypatch, capsys):
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    net = _tiny_net()
    run = speed.Compiled(net, "default", "cpu", "network")
    assert not run.compiled and run(torch.randn(2, 3, 32, 32)).shape == (2, 16)
    (line,) = _warnings(capsys)
    assert "no C++ compiler: no-such-compiler-here" in line
    assert speed.op_compiler("default", "cpu", 10) is None


def test_checkpoints_and_resume_across_the_compile_switch(tiny_demo, tmp_path, monkeypatch):
    """The compiled path (here torch.compile's eager backend: no C++) writes eager's checkpoint format,
    and a run started with --compile resumes without it (and back) to the uninterrupted run's numbers."""
    whole = _train(tiny_demo, tmp_path / "whole", "--max-steps", "4")
    real = torch.compile
    monkeypatch.setattr(speed.torch, "compile", lambda module, **kw: real(module, backend="eager"))
    part = _train(tiny_demo, tmp_path / "part", "--max-steps", "2", "--compile")
    assert set(part["model"]) == set(whole["model"]) and not any("_orig_mod" in k for k in part["model"])
    assert main(["--resume", str(tmp_path / "part"), "--compile", "off", "--max-steps", "3"]) == 0
    assert main(["--resume", str(tmp_path / "part"), "--compile", "default", "--max-steps", "4"]) == 0
    resumed = load_checkpoint(tmp_path / "part" / "last.pt")
    assert resumed["step"] == 4 and resumed["config"]["compile"] == "default"
    for name, value in whole["model"].items():
        torch.testing.assert_close(resumed["model"][name], value, rtol=RTOL, atol=ATOL)


@pytest.mark.slow
def test_inductor_compiled_training_agrees_with_eager(tiny_demo, tmp_path):
    """Real inductor (C++ kernels, ~1 min to compile here): 3 steps agree with eager within RTOL/ATOL."""
    eager = _train(tiny_demo, tmp_path / "eager", "--max-steps", "3")
    compiled = _train(tiny_demo, tmp_path / "compiled", "--max-steps", "3", "--compile")
    for name, value in eager["model"].items():
        torch.testing.assert_close(compiled["model"][name], value, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(compiled["head"], eager["head"], rtol=RTOL, atol=ATOL)


@pytest.mark.slow
def test_inductor_compiled_supernet_training_agrees_with_eager():
    """Real inductor on every block and choice of a small supernet (~1-2 min to compile here): SGD steps on
    random paths agree with eager within RTOL/ATOL, and the choice stays a guard, not a recompile."""
    import copy

    torch.manual_seed(0)
    eager = Supernet("iresnet10", width=0.0625, input_size=32, embedding_size=16).train()
    compiled = copy.deepcopy(eager)
    compiled.compile_parts(speed.op_compiler("default", "cpu", compiled.compiled_part_count()))
    paths = [[code] * eager.num_slots for code in range(eager.num_ops)] + [[0, 3, 1, 2], [2, 2, 0, 1]]
    x, target = torch.randn(8, 3, 32, 32), torch.randn(8, 16)
    for net in (eager, compiled):
        optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        for codes in paths:
            loss = nn.functional.mse_loss(net(x, codes), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    for (name, value), twin in zip(eager.state_dict().items(), compiled.state_dict().values()):
        torch.testing.assert_close(twin, value, rtol=RTOL, atol=ATOL, msg=name)


@pytest.mark.parametrize("granularity", ["block", "conv"])
def test_supernet_compiles_each_part_once_per_choice_without_a_recompile_storm(granularity):
    import copy

    graphs = []

    def counting(graph, inputs):
        graphs.append(graph)
        return graph.forward

    torch.manual_seed(0)
    supernet = Supernet("iresnet18", width=0.0625, input_size=32, embedding_size=16, granularity=granularity).eval()
    reference = copy.deepcopy(supernet)
    parts = supernet.compiled_part_count()
    assert parts == (8 if granularity == "block" else 16) * supernet.num_ops + 2  # blocks or sites x choices, stem, tail
    supernet.compile_parts(speed.op_compiler("default", "cpu", parts, backend=counting))
    assert set(supernet.state_dict()) == set(reference.state_dict())
    compiled = ([block.forward for block in supernet._blocks()] if granularity == "block"
                else [runner for _, choice in supernet._choices for runner in choice.runners])
    codes = {id(part.func._torchdynamo_orig_callable.__code__) for part in compiled}
    assert len(codes) == len(compiled)  # each part its own code object, so its own short list of graphs
    x = torch.randn(2, 3, 32, 32)
    rng = random.Random(0)
    with torch.no_grad():
        for code in range(supernet.num_ops):  # every choice of every part once
            torch.testing.assert_close(supernet(x, [code] * supernet.num_slots),
                                       reference(x, [code] * supernet.num_slots))
        seen = len(graphs)
        assert 0 < seen <= parts
        for _ in range(6):  # new paths are new combinations of compiled parts: nothing recompiles
            codes = [rng.randrange(supernet.num_ops) for _ in range(supernet.num_slots)]
            torch.testing.assert_close(supernet(x, codes), reference(x, codes))
        assert len(graphs) == seen
        twin = copy.deepcopy(supernet)  # a copy runs its own weights, not the original's
        for parameter in twin.parameters():
            parameter.add_(0.5)
        codes = [1] * supernet.num_slots
        assert not torch.allclose(twin(x, codes), supernet(x, codes))
        torch.testing.assert_close(supernet(x, codes), reference(x, codes))


def test_channels_last_training_refused_where_torch_crashes_and_inference_agrees(capsys):
    net = _tiny_net().eval()
    assert speed.cpu_backward_hazard(net) is not None  # 4-channel 1x1 stride-2 shortcut
    assert not speed.to_channels_last(net, "cpu", training=True)
    (line,) = _warnings(capsys)
    assert "--channels-last" in line and "1x1 stride-2" in line
    assert speed.cpu_backward_hazard(build_child(Arch.baseline("iresnet18", width=0.25, input_size=32))) is None
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    plain = TorchEmbedder(net, input_size=32)(images)
    fast = TorchEmbedder(_tiny_net().eval(), input_size=32, channels_last=True)(images)
    np.testing.assert_allclose(fast, plain, rtol=1e-4, atol=1e-5)


def test_inference_commands_take_the_speed_options():
    from facenar.evaluate import build_parser as evaluate_parser
    from facenar.search.cli import build_parser as search_parser
    from facenar.verify.cli import build_parser as verify_parser

    args = verify_parser().parse_args(["--compile", "--channels-last"])
    assert (args.compile, args.channels_last) == ("default", True)
    assert evaluate_parser().parse_args(["--model", "m.pt"]).compile == "off"
    assert search_parser().parse_args(["--compile", "max-autotune"]).compile == "max-autotune"
    with pytest.raises(SystemExit):
        verify_parser().parse_args(["--compile", "fastest"])


def test_every_mode_gives_inductor_options_it_knows():
    known = set(torch._inductor.config.get_config_copy())
    for mode in speed.COMPILE_MODES[1:]:
        for hazard in (False, True):
            options = speed.compile_options(mode, "inductor", hazard)["options"]
            assert options["fallback_random"] is True and set(options) <= known
            assert ("layout_optimization" in options) == hazard
    assert speed.compile_options("default", "eager", True) == {}


def test_search_compile_compiles_the_supernet_parts_and_the_head_with_the_loss(tiny_proxy, tmp_path, monkeypatch):
    """`facenar.search --compile` through a graph-counting backend (no C++ built): the blocks, stem, tail
    and head + loss become graphs, and the run's numbers match the eager run's."""
    import csv

    from facenar.search import engine
    from facenar.search.cli import main as search

    graphs = []

    def counting(graph, inputs):
        graphs.append(graph)
        return graph.forward

    real = speed.op_compiler
    monkeypatch.setattr(engine, "op_compiler", lambda mode, device, count: real(mode, device, count, backend=counting))
    # lr 0.01, not the paper's 0.1: compiled pooling sums in another order (facenar.space.pooling), and at 0.1
    # this tiny ArcFace net turns that 1e-7 into a flipped accuracy within two epochs
    tiny = ["--backbone", "iresnet10", "--width", "0.125", "--input-size", "32", "--embedding-size", "16",
            "--epochs", "2", "--pretrain-epochs", "1", "--t0", "1", "--batch-size", "16", "--steps-per-epoch", "2",
            "--controller-steps", "1", "--controller-samples", "2", "--val-batch", "16", "--derive-samples", "2",
            "--random-samples", "1", "--lr", "0.01", "--data", str(tiny_proxy)]
    assert search([*tiny, "--out", str(tmp_path / "eager")]) == 0
    assert not graphs
    assert search([*tiny, "--compile", "--out", str(tmp_path / "compiled")]) == 0
    inputs = [graph.code.split("):", 1)[0] for graph in graphs]  # each graph's forward signature
    assert any("L_head_parameters_weight_" in signature for signature in inputs)  # the head + loss
    assert any("prelu" in signature and "runners" not in signature for signature in inputs)  # the stem
    assert any("L_self_modules_fc_parameters_weight_" in signature for signature in inputs)  # the tail
    assert any("runners_1" in signature for signature in inputs)  # a block with its op 1
    rows = [list(csv.DictReader(open(tmp_path / name / "search.csv"))) for name in ("eager", "compiled")]
    assert len(rows[0]) == len(rows[1]) == 2
    for eager_row, compiled_row in zip(*rows):
        for column in ("shared_loss", "train_acc", "reward_mean"):
            assert float(compiled_row[column]) == pytest.approx(float(eager_row[column]), rel=RTOL, abs=ATOL)
