"""`finetune`'s training on a tiny seeded cross-encoder: it learns, resumes the same run, writes atomically."""
from __future__ import annotations

import pytest

from rescore_sidecar.tools.finetune.data import FinetuneError, Pair, Triplet
from rescore_sidecar.tools.finetune.train import TrainSettings, train

# Relevant and not: a handful of pairs a 2-layer model can fit in a few dozen steps.
PAIRS = [Pair("wing flutter", "flutter of a swept wing at transonic speed", 1.0),
         Pair("wing flutter", "heat transfer in a laminar boundary layer", 0.0),
         Pair("boundary layer heat transfer", "heat transfer in a laminar boundary layer", 1.0),
         Pair("boundary layer heat transfer", "flutter of a swept wing at transonic speed", 0.0)] * 4


def _settings(tmp_path, model, **kw) -> TrainSettings:
    base = dict(output=tmp_path / "tuned", start=str(model), batch_size=8, learning_rate=1e-2, warmup_ratio=0.0,
                max_length=64, save_steps=10, progress=False, device="cpu", seed=3)
    return TrainSettings(**{**base, **kw})


def _losses(result) -> list[float]:
    return [h["loss"] for h in result["log_history"] if "loss" in h]


def test_loss_goes_down_and_the_model_ranks_the_training_pairs(tmp_path, tiny_cross_encoder):
    from sentence_transformers.cross_encoder import CrossEncoder

    settings = _settings(tmp_path, tiny_cross_encoder, max_steps=40)
    result = train(settings, PAIRS)
    losses = _losses(result)
    assert result["global_step"] == 40 and len(losses) == 4
    assert losses[-1] < 0.5 * losses[0]
    model = CrossEncoder(str(settings.output))
    scores = model.predict([(p.query, p.document) for p in PAIRS[:4]])
    assert scores[0] > scores[1] and scores[2] > scores[3]
    # published whole: no staging folder left beside it, checkpoints kept apart for --resume
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tuned", "tuned.checkpoints"]


def test_resume_continues_the_same_run(tmp_path, tiny_cross_encoder):
    first = train(_settings(tmp_path, tiny_cross_encoder, max_steps=20), PAIRS)
    assert first["global_step"] == 20
    resumed = train(_settings(tmp_path, tiny_cross_encoder, max_steps=30, resume=True), PAIRS)
    # continues from step 20: only steps 21-30 are logged anew (a fresh run would log from step 10)
    new_steps = [h["step"] for h in resumed["log_history"] if "loss" in h and h["step"] > 20]
    assert resumed["global_step"] == 30 and new_steps == [30]
    assert [h["step"] for h in resumed["log_history"] if "loss" in h][:2] == [10, 20]


def test_margin_mse_learns_the_teachers_margins(tmp_path, tiny_cross_encoder):
    triplets = [Triplet(p.query, p.document, q.document) for p, q in zip(PAIRS[0:4:2], PAIRS[1:4:2])] * 8
    result = train(_settings(tmp_path, tiny_cross_encoder, loss="margin-mse", max_steps=30), triplets, [4.0] * 16)
    losses = _losses(result)
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("kwargs, examples, match", [
    ({}, [], "no training examples"),
    ({"loss": "hinge"}, PAIRS, "--loss"),
    ({"batch_size": 0}, PAIRS, "--batch-size"),
    ({"resume": True}, PAIRS, "no checkpoint"),
    ({"loss": "margin-mse"}, [Triplet("q", "a", "b")], "teacher margin"),
])
def test_bad_settings_fail_before_training(tmp_path, tiny_cross_encoder, kwargs, examples, match):
    with pytest.raises(FinetuneError, match=match):
        train(_settings(tmp_path, tiny_cross_encoder, **kwargs), examples)
    assert not (tmp_path / "tuned").exists()


def test_an_existing_output_is_kept_unless_overwrite(tmp_path, tiny_cross_encoder):
    (tmp_path / "tuned").mkdir()
    (tmp_path / "tuned" / "mine.txt").write_text("keep")
    with pytest.raises(FinetuneError, match="--overwrite"):
        train(_settings(tmp_path, tiny_cross_encoder, max_steps=2), PAIRS)
    assert (tmp_path / "tuned" / "mine.txt").read_text() == "keep"
    train(_settings(tmp_path, tiny_cross_encoder, max_steps=2, overwrite=True), PAIRS)
    assert not (tmp_path / "tuned" / "mine.txt").exists() and (tmp_path / "tuned" / "config.json").exists()
