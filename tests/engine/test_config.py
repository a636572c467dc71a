"""TrainConfig: YAML + dotted overrides, unknown keys with suggestions, one-line errors."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

from platelab.config import (
    check_key,
    dump_config,
    load_config,
    load_run_config,
)
from platelab.data.augment import AugmentConfig
from platelab.errors import PlatelabError
from platelab.models.loss import LocalizationLoss

DATA = ["data=/datasets/plates"]


@pytest.mark.parametrize(
    ("override", "key", "expected"),
    [
        ("lr=3e-4", "lr", 3e-4),  # YAML 1.1 reads "3e-4" as text; pydantic parses it
        ("lr=0.01", "lr", 0.01),
        ("epochs=7", "epochs", 7),
        ("amp=bf16", "amp", "bf16"),
        ("amp=off", "amp", "off"),  # YAML 1.1 reads "off" as False
        ("amp=on", "amp", "auto"),
        ("ema=true", "ema", True),
        ("channels_last=no", "channels_last", False),
        ("grad_clip=null", "grad_clip", None),
        ("grad_clip=2", "grad_clip", 2.0),
        ("size=320X240", "size", "320x240"),
        ("size=", "size", None),
        ("model=resnet18", "model", "resnet18"),
        ("out=runs/a:b", "out", Path("runs/a:b")),
        ("loss.iou_weight=2", "loss", {"iou_weight": 2}),
        ("loss.iou_type=ciou", "loss", {"iou_type": "ciou"}),
    ],
)
def test_override_sets_typed_value(override, key, expected):
    cfg = load_config(None, [*DATA, override])
    assert getattr(cfg, key) == expected


def test_defaults_and_later_override_wins():
    cfg = load_config(None, [*DATA, "lr=1", "lr=2"])
    assert cfg.lr == 2.0
    assert (cfg.keep_best, cfg.monitor, cfg.scheduler, cfg.size) == (3, "mean_iou", "cosine", None)
    assert cfg.data == Path("/datasets/plates")


def test_yaml_then_overrides(tmp_path):
    f = tmp_path / "exp.yaml"
    f.write_text("model: resnet18\nepochs: 5\nlr: 0.002\naugment:\n  flip_p: 0.3\n")
    cfg = load_config(f, [*DATA, "epochs=9", "augment.scale=0.1"])
    assert (cfg.model, cfg.epochs, cfg.lr) == ("resnet18", 9, 0.002)
    assert (cfg.augment.flip_p, cfg.augment.scale) == (0.3, 0.1)
    assert cfg.augment.rotate_deg == AugmentConfig().rotate_deg  # the owner's default


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("lr_rate=0.1", "unknown key 'lr_rate'; did you mean 'lr'?"),
        ("epoch=3", "unknown key 'epoch'; did you mean 'epochs'?"),
        ("batchsize=3", "unknown key 'batchsize'; did you mean 'batch_size'?"),
        ("zzz=1", "unknown key 'zzz'"),
        ("lr.x=1", "'lr' is a value, not a section"),
        ("lr", "override 'lr' must look like key=value"),
        ("=3", "override '=3' must look like key=value"),
        ("ema_decayy=0.9", "unknown key 'ema_decayy'; did you mean 'ema_decay'?"),
        ("augment", "override 'augment' must look like key=value"),
        ("augment.flip=0.1", "unknown key 'augment.flip'; did you mean 'augment.flip_p'?"),
        ("loss.iou_wieght=1", "unknown key 'loss.iou_wieght'; did you mean 'loss.iou_weight'?"),
        ("loss.iou_weight.x=1", "'loss.iou_weight' is a value, not a section"),
    ],
)
def test_bad_override_names_the_key(override, message):
    with pytest.raises(PlatelabError, match="^" + message.replace("?", r"\?").replace(".", r"\.")):
        load_config(None, [*DATA, override])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("warmup_epoch: 2", "unknown key 'warmup_epoch'; did you mean 'warmup_epochs'?"),
        (
            "augment: {rotate: 3}",
            "unknown key 'augment.rotate'; did you mean 'augment.rotate_deg'?",
        ),
        ("loss: {l1_weigth: 3}", "unknown key 'loss.l1_weigth'; did you mean 'loss.l1_weight'?"),
    ],
)
def test_unknown_key_in_yaml_gets_suggestion(tmp_path, text, message):
    f = tmp_path / "exp.yaml"
    f.write_text("data: d\n" + text + "\n")
    with pytest.raises(PlatelabError) as e:
        load_config(f)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("lr=abc", "lr: Input should be a valid number"),
        ("epochs=0", "epochs: Input should be greater than or equal to 1"),
        ("amp=fp8", "amp: Input should be 'auto', 'off', 'fp16' or 'bf16'"),
        ("size=640by480", "size: Value error, size must look like 640x480"),
        ("keep_best=-1", "keep_best: Input should be greater than or equal to 0"),
        ("augment.flip_p=2", "augment.flip_p: Input should be less than or equal to 1"),
    ],
)
def test_bad_value_is_one_line(override, fragment):
    with pytest.raises(PlatelabError) as e:
        load_config(None, [*DATA, override])
    text = str(e.value)
    assert text.startswith("invalid config: ") and fragment in text
    assert "\n" not in text


def test_missing_data_and_several_errors_in_one_line():
    with pytest.raises(PlatelabError) as e:
        load_config(None, ["lr=abc"])
    assert "data is required" in str(e.value) and "lr:" in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [("- a\n- b\n", "must hold a mapping"), ("a: [1\n", "is not valid YAML")],
)
def test_malformed_yaml(tmp_path, text, message):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(PlatelabError, match=message):
        load_config(f)


def test_missing_file():
    with pytest.raises(PlatelabError, match="config file not found"):
        load_config("/nonexistent/x.yaml")


def test_dump_round_trips(tmp_path):
    cfg = load_config(None, [*DATA, "lr=3e-4", "size=320x240", "augment.flip_p=0.1", "ema=true"])
    f = tmp_path / "hparams.yaml"
    f.write_text(dump_config(cfg))
    assert load_config(f) == cfg


def test_check_key_accepts_every_nested_field():
    # the component-owned sections: their keys come from the component, not TrainConfig
    for name in AugmentConfig.model_fields:
        check_key(f"augment.{name}")
    for name in (*inspect.signature(LocalizationLoss).parameters, "cls_loss", "corner_weight"):
        check_key(f"loss.{name}")


def test_task_sets_the_monitor_default_and_its_loss_keys():
    assert load_config(None, DATA).monitor == "mean_iou"
    detect = load_config(None, [*DATA, "task=detect"])
    assert detect.task == "detect" and detect.monitor == "ap50"
    assert load_config(None, [*DATA, "task=detect", "monitor=ar"]).monitor == "ar"
    assert load_config(None, [*DATA, "task=detect", "loss.cls_loss=focal"]).loss == {
        "cls_loss": "focal"
    }
    with pytest.raises(PlatelabError, match="unknown key 'loss.cls_loss'"):
        load_config(None, [*DATA, "loss.cls_loss=focal"])  # a localiser's loss has no such key
    with pytest.raises(PlatelabError, match="task"):
        load_config(None, [*DATA, "task=segment"])


@pytest.mark.parametrize(
    "path", sorted(Path(__file__).parents[2].joinpath("configs").glob("*.yaml"))
)
def test_example_configs_load(path):
    cfg = load_config(path, DATA)
    written = yaml.safe_load(path.read_text())
    for key in ("model", "epochs", "lr"):  # what the file says is what the config holds
        if key in written:
            assert getattr(cfg, key) == written[key], key


def test_run_config_for_resume(tmp_path):
    cfg = load_config(None, [*DATA, "epochs=3", f"out={tmp_path}"])
    (tmp_path / "hparams.yaml").write_text(dump_config(cfg))
    again = load_run_config(tmp_path, ["epochs=6"])
    assert again.epochs == 6 and again.out == tmp_path
    with pytest.raises(PlatelabError, match="is not a run folder"):
        load_run_config(tmp_path / "nope")


@pytest.mark.parametrize(
    ("monitor", "mode"),
    [("mean_iou", "max"), ("ap50", "max"), ("accuracy", "max"), ("val_loss", "min"),
     ("train_loss", "min"), ("cer", "min"), ("corner_error_px", "min")],
)  # fmt: skip
def test_monitor_mode_ranks_errors_and_losses_lower_is_better(monitor, mode):
    from platelab.engine.config import monitor_mode

    assert monitor_mode(monitor) == mode
