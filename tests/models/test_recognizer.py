"""The text recognisers (task=read): output contract, config round trip, task guards."""

from __future__ import annotations

import pytest
import torch

from platelab.errors import PlatelabError
from platelab.geometry import CROP_SIZE
from platelab.models import create_model, describe_models
from platelab.models.recognizer import RECOGNIZERS
from platelab.models.weights import checkpoint_meta
from platelab.tasks import get_task
from platelab.text import get_charset

W, H = CROP_SIZE


def _crops(batch: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (batch, 3, H, W), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize("name", RECOGNIZERS)
def test_output_contract_and_gradients(name):
    torch.manual_seed(0)
    model = create_model(name)
    c = len(get_charset("plates"))
    assert model.task == "read" and model.input_size == (W, H) and model.num_classes == c
    out = model(_crops())
    if name == "crnn":
        assert set(out) == {"logits"} and out["logits"].shape == (2, W // 4, c)
    else:
        assert out["slot_logits"].shape == (2, model.max_len, c)
        assert out["slot_x"].shape == (2, model.max_len)
        assert ((out["slot_x"] >= 0) & (out["slot_x"] <= 1)).all()
    sum(v.sum() for v in out.values()).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    model.eval()
    with torch.no_grad():
        a, b = model(_crops()), model(_crops().float() / 255)
    for k in a:
        torch.testing.assert_close(a[k], b[k])


@pytest.mark.parametrize("name", RECOGNIZERS)
def test_config_rebuilds_and_checkpoint_meta_describes_it(name):
    model = create_model(name, charset="cn", width=8)
    again = create_model(name, **model.config)
    assert again.charset.symbols == model.charset.symbols
    assert sum(p.numel() for p in again.parameters()) == sum(p.numel() for p in model.parameters())
    meta = checkpoint_meta(model, model.input_size)
    assert meta["task"] == "read" and meta["crop_size"] == [W, H]
    assert meta["charset"]["name"] == "cn" and "皖" in meta["charset"]["symbols"]
    assert meta["decoder"] == ("ctc" if name == "crnn" else "slots")


def test_crnn_without_rnn_and_custom_charset():
    model = create_model("crnn", rnn=False, charset=list("0123456789"))
    assert model(_crops(1))["logits"].shape == (1, W // 4, 11)


def test_task_guards():
    with pytest.raises(PlatelabError, match="not a text recogniser"):
        get_task("read").build_model("dwsep_tiny")
    with pytest.raises(PlatelabError, match="task=read model, not task=localize"):
        get_task("localize").build_model("crnn")
    with pytest.raises(PlatelabError, match="text recogniser .* not a detect model"):
        get_task("detect").build_model("crnn")
    with pytest.raises(PlatelabError, match="no library weights"):
        create_model("crnn", pretrained=True)
    with pytest.raises(PlatelabError, match="multiples of 8"):
        create_model("crnn", crop_size=(100, 30))


def test_describe_counts_at_the_crop_size():
    rows = describe_models(names=list(RECOGNIZERS))
    assert all(r["input_size"] == (W, H) for r in rows)
    assert all(0.01 < r["gflops"] < 0.5 for r in rows)
