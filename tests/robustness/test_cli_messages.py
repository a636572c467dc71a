"""User mistakes on the command line: one line on stderr, exit 2, no traceback, no waiting."""

from __future__ import annotations

import pytest
import torch

from platelab import cli
from platelab.errors import PlatelabError

COMMANDS = [
    ["models"],
    ["train"],
    ["eval", "RUN", "--data", "DS"],
    ["compare", "--models", "dwsep_tiny", "--data", "DS"],
    ["bench", "dwsep_tiny"],
    ["export", "x.pth", "--out", "x.onnx"],
    ["predict", "x.pth", "src", "--out", "out"],
    ["demo"],
]


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("platelab: error: ")
    assert "Traceback" not in captured.out + captured.err
    return lines[0]


@pytest.mark.parametrize("argv", [*COMMANDS, [], ["data"], ["nonsense"]], ids=str)
def test_usage_mistakes_are_one_line_for_every_command(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([*argv, "--no-such-flag"] if argv else argv)
    assert e.value.code == 2
    _one_error_line(capsys)


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (
            ["predict", "m.pth", "src", "--out", "o", "--threads", "0"],
            "--threads: expected a positive",
        ),
        (["eval", "run", "--data", "ds", "--batch-size", "0"], "--batch-size: expected a positive"),
        (["eval", "run", "--data", "ds", "--workers", "-1"], "--workers: expected an integer >= 0"),
        (["bench", "dwsep_tiny", "--iters", "x"], "--iters: expected a positive integer, got 'x'"),
        (["demo", "--scenes", "0"], "--scenes: expected a positive"),
    ],
)
def test_counts_out_of_range_are_refused_before_any_work(argv, expect, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    assert expect in _one_error_line(capsys)


@pytest.mark.parametrize("content", ["checkpoint", "random", "nul"])
def test_a_binary_config_file_is_one_line(tmp_path, content, capsys):
    f = tmp_path / "config.yaml"
    if content == "checkpoint":
        torch.save({"w": torch.zeros(3)}, f)
    elif content == "random":
        f.write_bytes(bytes(range(256)) * 4)
    else:
        f.write_bytes(b"model: dwsep_tiny\x00\n")
    assert cli.main(["train", "--config", str(f)]) == 2
    assert f"platelab: error: {f} is not a YAML config" in _one_error_line(capsys)


def test_ansi_codes_and_line_breaks_never_reach_the_terminal(monkeypatch, capsys):
    def fails(args):
        raise PlatelabError("\x1b[31mbad\x1b[0m thing\nsecond line")

    monkeypatch.setattr(cli, "cmd_models", fails)
    assert cli.main(["models"]) == 2
    assert _one_error_line(capsys) == "platelab: error: bad thing second line"


def test_demo_with_an_unknown_model_fails_before_synthesising(tmp_path, monkeypatch, capsys):
    import platelab.data.synth as synth

    def no_work(*a, **kw):
        raise AssertionError("the demo started synthesising before checking its models")

    monkeypatch.setattr(synth, "generate", no_work)
    out = tmp_path / "demo"
    assert cli.main(["demo", "--models", "resnet999", "--out", str(out), "--no-real"]) == 2
    assert "unknown model 'resnet999'; did you mean" in _one_error_line(capsys)
    assert not out.exists()
