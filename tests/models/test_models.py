"""The model zoo: every registered model honours the output contract (timm tests/test_models.py)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from platelab.errors import PlatelabError
from platelab.models import (
    MODEL_MAP,
    BoxHead,
    Localizer,
    count_flops,
    create_model,
    describe_models,
    list_models,
    register_model,
)
from platelab.models import registry as registry_mod
from platelab.models.recognizer import RECOGNIZERS

REQUIRED = {"resnet18", "resnet34", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large",
            "efficientnet_b0", "dwsep_tiny", "dwsep_small", "dwsep_base"}  # fmt: skip
H, W = 64, 96


def _images(batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, H, W), dtype=torch.uint8, generator=g)


def _check_outputs(out: dict[str, torch.Tensor], batch: int) -> None:
    boxes, logits = out["boxes_norm_xyxy"], out["logits"]
    assert boxes.shape == (batch, 4) and logits.shape == (batch,)
    assert torch.isfinite(boxes).all() and torch.isfinite(logits).all()
    assert (boxes >= 0).all() and (boxes <= 1).all()
    assert (boxes[:, 0] <= boxes[:, 2]).all() and (boxes[:, 1] <= boxes[:, 3]).all()


# -- every model ---------------------------------------------------------------------------
def test_registry_has_the_contracted_models():
    assert set(list_models()) >= REQUIRED
    assert list_models() == sorted(list_models())
    assert list_models("resnet*") == ["resnet18", "resnet34", "resnet50"]
    assert not any(n.startswith("timm/") for n in list_models())


@pytest.mark.parametrize("name", [n for n in list_models() if n not in RECOGNIZERS])
def test_forward_backward_uint8_float_channels_last(name):
    torch.manual_seed(0)
    model = create_model(name)
    assert isinstance(model, Localizer) and model.name == name
    assert model.backbone.stride == 32 and model.backbone.out_channels > 0
    images = _images()

    # training mode, batch 2: forward, backward, every parameter gets a finite gradient
    model.train()
    out = model(images)
    _check_outputs(out, 2)
    (out["boxes_norm_xyxy"].sum() + out["logits"].sum()).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname

    model.eval()
    with torch.no_grad():
        ref = model(images)
        _check_outputs(ref, 2)
        # uint8 is converted inside: identical to feeding float / 255
        as_float = model(images.float() / 255)
        for k in ref:
            assert torch.equal(ref[k], as_float[k]), k
        # channels_last model and input give the same numbers
        model_cl = model.to(memory_format=torch.channels_last)
        out_cl = model_cl(images.contiguous(memory_format=torch.channels_last))
    for k in ref:
        torch.testing.assert_close(out_cl[k], ref[k], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["dwsep_tiny", "mobilenet_v3_small"])
def test_config_rebuilds_the_same_network(name):
    torch.manual_seed(0)
    model = create_model(name, head_width=32)
    twin = create_model(model.name, **model.config)
    assert model.config["head_width"] == 32
    assert {k: v.shape for k, v in model.state_dict().items()} == {
        k: v.shape for k, v in twin.state_dict().items()
    }
    twin.load_state_dict(model.state_dict())
    model.eval(), twin.eval()
    with torch.no_grad():
        torch.testing.assert_close(twin(_images()), model(_images()), rtol=0, atol=0)


def test_mean_std_buffers_are_saved_and_applied():
    model = create_model("dwsep_tiny").eval()
    state = model.state_dict()
    torch.testing.assert_close(state["mean"].flatten(), torch.tensor([0.485, 0.456, 0.406]))
    torch.testing.assert_close(state["std"].flatten(), torch.tensor([0.229, 0.224, 0.225]))
    # a pixel equal to the mean normalises to 0: the backbone sees exactly zeros
    seen = {}

    def spy(module, inputs, output):
        seen["x"] = inputs[0]

    model.backbone.register_forward_hook(spy)
    mean_image = model.mean.expand(1, 3, H, W).clone()
    with torch.no_grad():
        model(mean_image)
    assert seen["x"].abs().max() < 1e-6


def test_width_mult_scales_the_custom_family():
    narrow = create_model("dwsep_small", width_mult=0.5)
    wide = create_model("dwsep_small")
    assert narrow.config["width_mult"] == 0.5
    assert narrow.backbone.out_channels == 192 and wide.backbone.out_channels == 384
    assert sum(p.numel() for p in narrow.parameters()) < sum(p.numel() for p in wide.parameters())
    with pytest.raises(PlatelabError, match="width_mult"):
        create_model("dwsep_small", width_mult=0)


# -- the head ------------------------------------------------------------------------------
def test_head_soft_argmax_finds_the_hot_cell():
    head = BoxHead(in_channels=8, width=8).eval()  # BN in eval with fresh stats: identity
    with torch.no_grad():
        head.reduce[0].weight.zero_()
        head.reduce[0].weight[0, 0] = 1.0  # reduced channel 0 = feature channel 0
        head.heatmap.weight[0, 0] = 50.0  # heatmap logit = 50 x that channel
        head.mlp[-1].weight.zero_()  # outputs = biases: no offset, the prior size
    features = torch.zeros(1, 8, 4, 5)
    features[0, 0, 1, 3] = 10.0  # the plate is in row 1, column 3 of a 4x5 map
    box = head(features)["boxes_norm_xyxy"][0]
    # centre (3.5 / 5, 1.5 / 4) = (0.7, 0.375), size (0.1, 0.05)
    torch.testing.assert_close(box, torch.tensor([0.65, 0.35, 0.75, 0.4]), rtol=0, atol=1e-5)


def test_boxes_stay_valid_for_extreme_head_outputs():
    head = BoxHead(in_channels=4, width=4)
    with torch.no_grad():
        head.mlp[-1].bias.copy_(torch.tensor([30.0, 30.0, 30.0, -30.0, 0.0]))  # huge, off-canvas
    out = head(torch.randn(3, 4, 2, 3))
    _check_outputs(out, 3)


# -- registry ------------------------------------------------------------------------------
def test_register_refuses_duplicates_and_timm_prefix(monkeypatch):
    monkeypatch.setattr(registry_mod, "_MODELS", dict(registry_mod._MODELS))
    with pytest.raises(ValueError, match="already registered"):
        register_model("resnet18")(lambda: None)
    with pytest.raises(ValueError, match="reserved"):
        register_model("timm/mine")(lambda: None)
    fn = register_model("my_model")(lambda **kw: kw)
    assert registry_mod._MODELS["my_model"] is fn


def test_model_map_is_read_only_and_matches_the_registry():
    assert set(MODEL_MAP) == set(list_models())
    with pytest.raises(TypeError):
        MODEL_MAP["x"] = None  # type: ignore[index]
    assert MODEL_MAP["dwsep_tiny"]().name == "dwsep_tiny"


def test_unknown_model_suggests_close_names():
    with pytest.raises(PlatelabError) as e:
        create_model("resnet81")
    msg = str(e.value)
    assert msg.startswith("unknown model 'resnet81'; did you mean: resnet18")
    assert "\n" not in msg
    with pytest.raises(PlatelabError, match="choose from: .*dwsep_base"):
        create_model("zzzzzz")


def test_none_kwargs_are_dropped_and_unknown_kwargs_refused():
    model = create_model("dwsep_tiny", head_width=None, weights=None, pretrained=None)
    assert model.config["head_width"] == 64  # the model's own default survived
    with pytest.raises(PlatelabError, match="no argument 'depth'.*it takes: "):
        create_model("dwsep_tiny", depth=3)


def test_timm_backbone_by_name():
    pytest.importorskip("timm")
    assert "timm/resnet18" in list_models("timm/resnet1*", include_timm=True)
    model = create_model("timm/resnet18", head_width=16)
    assert model.name == "timm/resnet18"
    assert model.backbone.out_channels == 512 and model.backbone.stride == 32
    _check_outputs(model(_images()), 2)
    with pytest.raises(PlatelabError, match="unknown timm model 'resnet81'; did you mean"):
        create_model("timm/resnet81")


def test_timm_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "timm", None)
    with pytest.raises(PlatelabError, match="need timm.*pip install timm"):
        create_model("timm/resnet18")


# -- describe / FLOPs ----------------------------------------------------------------------
def test_describe_models_counts_params_and_flops():
    rows = describe_models(size=(96, 64), names=["dwsep_tiny", "resnet18"])
    assert [r["name"] for r in rows] == ["dwsep_tiny", "resnet18"]
    model = create_model("dwsep_tiny").eval()
    assert rows[0]["params"] == sum(p.numel() for p in model.parameters())
    assert rows[0]["input_size"] == (96, 64)
    counter = FlopCounterMode(display=False)  # the same count on a real CPU forward
    with counter, torch.no_grad():
        model(_images(1))
    assert rows[0]["gflops"] == pytest.approx(counter.get_total_flops() / 1e9, rel=1e-9)
    assert rows[1]["gflops"] > 10 * rows[0]["gflops"]


def test_flops_of_a_known_layer_stack():
    # stem conv of dwsep_tiny alone: 3->16 channels, 3x3, stride 2 on 96x64 -> 48x32 outputs
    model = create_model("dwsep_tiny").eval()
    stem = model.backbone.features[0][0]
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        stem(torch.zeros(1, 3, H, W))
    assert counter.get_total_flops() == 2 * (48 * 32) * 16 * (3 * 3 * 3)
    assert count_flops(model, (W, H)) > counter.get_total_flops()


def test_dwsep_tiny_is_cheap_at_640x480():
    (row,) = describe_models(names=["dwsep_tiny"])
    assert row["input_size"] == (640, 480)
    assert row["gflops"] < 0.3


# -- weights -------------------------------------------------------------------------------
def _same_outputs(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor) -> None:
    a.eval(), b.eval()
    with torch.no_grad():
        ya, yb = a(x), b(x)
    if isinstance(ya, dict):
        for k in ya:
            assert torch.equal(ya[k], yb[k]), k
    else:
        assert torch.equal(ya, yb)


def test_weights_path_backbone_and_whole_model(tmp_path):
    torch.manual_seed(1)
    src = create_model("dwsep_tiny")
    src.train()(_images())  # move BN running stats away from their defaults
    x = (_images().float() / 255 - src.mean) / src.std  # what the backbone sees

    torch.save(src.backbone.state_dict(), tmp_path / "backbone.pth")
    loaded = create_model("dwsep_tiny", weights=tmp_path / "backbone.pth")
    _same_outputs(src.backbone, loaded.backbone, x)

    torch.save({"model": src.state_dict(), "epoch": 3}, tmp_path / "ckpt.pth")  # a checkpoint
    whole = create_model("dwsep_tiny", weights=str(tmp_path / "ckpt.pth"))
    _same_outputs(src, whole, _images())


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_weights_path_full_torchvision_state_dict(tmp_path, name):
    import torchvision

    torch.manual_seed(2)
    net = getattr(torchvision.models, name)(weights=None).eval()
    torch.save(net.state_dict(), tmp_path / "tv.pth")  # with its classifier: ignored
    model = create_model(name, weights=tmp_path / "tv.pth").eval()
    body = net.features if name != "resnet18" else torch.nn.Sequential(*list(net.children())[:-2])
    _same_outputs(body, model.backbone, torch.randn(1, 3, H, W))


def test_weights_path_mismatch_is_one_line(tmp_path):
    torch.save(create_model("resnet18").backbone.state_dict(), tmp_path / "r18.pth")
    with pytest.raises(PlatelabError) as e:
        create_model("resnet34", weights=tmp_path / "r18.pth")
    msg = str(e.value)
    assert "\n" not in msg and "missing keys layer1.2." in msg and "in all)" in msg

    torch.save(create_model("dwsep_tiny", width_mult=0.5).state_dict(), tmp_path / "half.pth")
    with pytest.raises(PlatelabError, match=r"wrong shapes backbone\.features\.0\.0\.weight"):
        create_model("dwsep_tiny", weights=tmp_path / "half.pth")

    torch.save({"conv.weight": torch.zeros(1), "fc.bias": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(PlatelabError, match="unexpected keys conv.weight"):
        create_model("dwsep_tiny", weights=tmp_path / "other.pth")


def test_weights_path_bad_files(tmp_path):
    with pytest.raises(PlatelabError, match="weights file not found"):
        create_model("dwsep_tiny", weights=tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(PlatelabError, match="cannot read weights"):
        create_model("dwsep_tiny", weights=tmp_path / "junk.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(PlatelabError, match="does not hold a state dict"):
        create_model("dwsep_tiny", weights=tmp_path / "list.pth")


def test_pretrained_without_cache_or_network_is_one_line(tmp_path, monkeypatch):
    import urllib.error

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(PlatelabError) as e:
        create_model("resnet18", pretrained=True)
    msg = str(e.value)
    assert "\n" not in msg
    assert "not in the torch hub cache" in msg and str(tmp_path) in msg
    assert "weights=PATH" in msg and "no network" in msg


def test_pretrained_from_the_hub_cache(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    torch.manual_seed(3)
    net = torchvision.models.mobilenet_v3_small(weights=None)
    url = torchvision.models.MobileNet_V3_Small_Weights.DEFAULT.url
    (tmp_path / "checkpoints").mkdir()
    torch.save(net.state_dict(), tmp_path / "checkpoints" / url.rsplit("/", 1)[-1])
    model = create_model("mobilenet_v3_small", pretrained=True)
    _same_outputs(net.features, model.backbone, torch.randn(1, 3, H, W))


def test_pretrained_refusals(tmp_path):
    with pytest.raises(PlatelabError, match="dwsep_small has no library weights"):
        create_model("dwsep_small", pretrained=True)
    with pytest.raises(PlatelabError, match="not both"):
        create_model("resnet18", pretrained=True, weights=tmp_path / "x.pth")
