"""The engine's own config keys and their defaults (``platelab.config.TrainConfig`` extends them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class EngineConfig(BaseModel):
    """The keys the engine reads; ``platelab.config.TrainConfig`` extends it with the task's."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    out: Path = Field(Path("runs/train"), description="run folder")
    epochs: int = Field(30, ge=1, description="total epochs (a resume may raise it)")
    lr: float = Field(1e-3, gt=0, description="peak AdamW learning rate")
    weight_decay: float = Field(0.01, ge=0, description="AdamW decay (not on biases/norms)")
    scheduler: Literal["cosine", "onecycle", "none"] = "cosine"
    warmup_epochs: float = Field(1.0, ge=0, description="linear warm-up (cosine and none)")
    min_lr_ratio: float = Field(0.01, ge=0, le=1, description="final cosine LR / lr")
    amp: Literal["auto", "off", "fp16", "bf16"] = Field(
        "auto", description="auto: fp16 on CUDA, fp32 on CPU (bf16 trains slower there)"
    )
    channels_last: bool = True
    compile: bool = False
    grad_clip: float | None = Field(None, gt=0, description="max gradient norm, None = off")
    ema: bool = Field(False, description="evaluate and keep an EMA of the weights")
    ema_decay: float = Field(0.999, gt=0, lt=1)
    seed: int = 0
    keep_best: int = Field(3, ge=0, description="how many best epochs to keep")
    monitor: str = Field("mean_iou", description="metric ranking the best epochs")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    log_every: int = Field(50, ge=1, description="steps between TensorBoard points")
    max_train_batches: int | None = Field(None, ge=1, description="cap per epoch (quick runs)")
    max_val_batches: int | None = Field(None, ge=1, description="cap per evaluation")
    tensorboard: bool = Field(True, description="also log to TensorBoard when installed")

    @field_validator("amp", mode="before")
    @classmethod
    def _amp_switch(cls, v: Any) -> Any:
        # YAML 1.1 reads a bare off/on/no/yes as a bool: ``amp=off`` must still mean "off".
        return {False: "off", True: "auto"}.get(v, v) if isinstance(v, bool) else v


def monitor_mode(monitor: str) -> Literal["max", "min"]:
    """``"min"`` for losses and errors (a key containing ``loss`` or ``error``, or ``cer``,
    the character error rate), ``"max"`` for everything else (accuracies, IoU, AP)."""
    lower = "loss" in monitor or "error" in monitor or monitor == "cer"
    return "min" if lower else "max"
