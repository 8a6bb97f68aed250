"""Trains a cross-encoder with sentence-transformers' CrossEncoderTrainer (no hand-written loop).

The run writes its checkpoints to `<output>.checkpoints/` (so `--resume` continues the same run:
optimizer, scheduler, data order and step count come back with the weights) and the finished
model to a staging folder renamed onto `<output>` at the end, so a crash never leaves a
half-written model where a sidecar would load it.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
from typing import Any, Sequence

from rescore_sidecar.tools.finetune.data import FinetuneError, Pair, Triplet

BUNDLED = "bundled"
LOSSES = ("bce", "margin-mse")


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    output: pathlib.Path
    start: str = BUNDLED             # hub id, local folder, or "bundled" (all-MiniLM-L6-v2 + a fresh head)
    loss: str = "bce"                # bce: labelled pairs; margin-mse: triplets with teacher margins
    epochs: float = 1.0
    max_steps: int = 0               # > 0 overrides epochs
    batch_size: int = 16
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    max_length: int = 256
    seed: int = 0
    save_steps: int = 200
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    device: str = "auto"             # auto: cuda when present, else cpu

    @property
    def checkpoints(self) -> pathlib.Path:
        return self.output.with_name(self.output.name + ".checkpoints")

    def check(self) -> None:
        if self.loss not in LOSSES:
            raise FinetuneError(f"--loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        for name in ("batch_size", "max_length", "save_steps"):
            if getattr(self, name) < 1:
                raise FinetuneError(f"--{name.replace('_', '-')} must be at least 1")
        if self.max_steps < 0 or self.epochs <= 0 or self.learning_rate <= 0:
            raise FinetuneError("--steps must be >= 0, --epochs and --learning-rate > 0")
        if self.output.exists() and not (self.overwrite or self.resume):
            raise FinetuneError(f"{self.output} exists; pass --overwrite to replace it (or --resume)")
        if self.resume and not _last_checkpoint(self.checkpoints):
            raise FinetuneError(f"--resume: no checkpoint in {self.checkpoints} to resume from")


def _last_checkpoint(folder: pathlib.Path) -> pathlib.Path | None:
    found = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])) if folder.is_dir() else []
    return found[-1] if found else None


def start_source(start: str) -> str:
    """Where the starting weights come from: `bundled` is the pretrained all-MiniLM-L6-v2 shipped with
    the server extra (a bi-encoder: its classification head starts fresh)."""
    if start == BUNDLED:
        from rescore_sidecar.sidecar.config import offline_model_dir

        return str(offline_model_dir())
    return start


def load_start(settings: TrainSettings) -> Any:
    """The starting CrossEncoder, one relevance score per pair (num_labels=1)."""
    import transformers
    from sentence_transformers.cross_encoder import CrossEncoder

    transformers.set_seed(settings.seed)  # the fresh head's initialisation, too
    device = None if settings.device == "auto" else settings.device
    try:
        model = CrossEncoder(start_source(settings.start), num_labels=1, max_length=settings.max_length,
                             device=device)
    except OSError as exc:
        raise FinetuneError(f"cannot load the starting model {settings.start!r}: {exc}") from None
    if model.num_labels != 1:
        raise FinetuneError(f"the starting model {settings.start!r} has {model.num_labels} outputs; "
                            "fine-tuning needs a one-score cross-encoder (or a plain encoder)")
    return model


def to_dataset(examples: Sequence[Pair] | Sequence[Triplet], labels: Sequence[float] | None = None) -> Any:
    """Columns in the order the loss reads them: (query, document, label) or (query, positive, negative, label)."""
    from datasets import Dataset

    if not examples:
        raise FinetuneError("no training examples: the judged queries gave no pairs (check the qrels and --negatives)")
    if isinstance(examples[0], Pair):
        return Dataset.from_dict({"query": [p.query for p in examples], "document": [p.document for p in examples],
                                  "label": [p.label for p in examples]})
    if labels is None or len(labels) != len(examples):
        raise FinetuneError("margin-mse needs one teacher margin per triplet")
    return Dataset.from_dict({"query": [t.query for t in examples], "positive": [t.positive for t in examples],
                              "negative": [t.negative for t in examples], "label": list(labels)})


def train(settings: TrainSettings, examples: Sequence[Pair] | Sequence[Triplet],
          labels: Sequence[float] | None = None) -> dict:
    """Trains, writes the model to `settings.output` and returns the trainer's log history and step count."""
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss, MarginMSELoss

    import torch

    settings.check()
    on_gpu = settings.device != "cpu" and torch.cuda.is_available()
    dataset = to_dataset(examples, labels)
    model = load_start(settings)
    loss = BinaryCrossEntropyLoss(model) if settings.loss == "bce" else MarginMSELoss(model)
    args = CrossEncoderTrainingArguments(
        output_dir=str(settings.checkpoints), num_train_epochs=settings.epochs, max_steps=settings.max_steps or -1,
        per_device_train_batch_size=settings.batch_size, learning_rate=settings.learning_rate,
        warmup_steps=settings.warmup_ratio, seed=settings.seed, data_seed=settings.seed,
        save_strategy="steps", save_steps=settings.save_steps, save_total_limit=2, logging_steps=10,
        report_to="none", disable_tqdm=not settings.progress, use_cpu=settings.device == "cpu",
        dataloader_drop_last=False, dataloader_pin_memory=on_gpu)
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
    result = trainer.train(resume_from_checkpoint=str(_last_checkpoint(settings.checkpoints)) if settings.resume else None)
    publish(model, settings.output)
    return {"global_step": result.global_step, "training_loss": result.training_loss,
            "log_history": trainer.state.log_history, "examples": len(dataset)}


def publish(model: Any, output: pathlib.Path) -> None:
    """Saves next to `output`, then renames onto it: readers see the old model or the whole new one."""
    output = output.resolve()
    staging = output.with_name(f".{output.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(str(staging))
    if output.exists():
        old = output.with_name(f".{output.name}.old-{os.getpid()}")
        os.replace(output, old)
        os.replace(staging, output)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, output)
