"""The default loss (architecture.md §4) pinned on hand-computed values for every branch, and `compute_loss`."""

from __future__ import annotations

import math
import re

import pytest
import torch

from prime_rl.trainer.rl.config import LossConfig
from prime_rl.trainer.rl.loss import LossInputs, LossOutputs, compute_loss, default_loss_fn, setup_loss_fn
from prime_rl.utils.config import ConfigError

LN2 = math.log(2.0)


def inputs(log_ratio, lp=None, adv=1.0, mask=None, teacher=None) -> LossInputs:
    """A sequence with the given `log(π/μ)` per token; trainer logprobs default to -1 - index."""
    n = len(log_ratio)
    lp = torch.tensor(lp if lp is not None else [-1.0 - i for i in range(n)], dtype=torch.float64)
    return LossInputs(
        trainer_logprobs=lp.clone().requires_grad_(),
        inference_logprobs=lp - torch.tensor(log_ratio, dtype=torch.float64),
        teacher_logprobs=None if teacher is None else torch.tensor(teacher, dtype=torch.float64),
        advantages=torch.full((n,), adv, dtype=torch.float64),
        loss_mask=torch.tensor(mask if mask is not None else [True] * n),
    )


def run(inp: LossInputs, **cfg) -> tuple[float, list[float], dict[str, torch.Tensor]]:
    out = default_loss_fn(inp, LossConfig(**cfg))
    (grad,) = torch.autograd.grad(out.loss, inp.trainer_logprobs, allow_unused=True)
    return out.loss.item(), grad.tolist(), out.metrics


def test_token_ratio_weights_the_policy_gradient():
    # ratios 1, e^-0.5, 2 on logprobs -1, -2, -3 with advantage 1
    loss, grad, m = run(inputs([0.0, -0.5, LN2]))
    assert loss == pytest.approx(1 + 2 * math.exp(-0.5) + 6)
    assert grad == pytest.approx([-1.0, -math.exp(-0.5), -2.0])
    assert m["mismatch_kl"].item() == pytest.approx((math.exp(-0.5) - 0.5 + 1 - LN2) / 3)
    assert m["geo_seq_ratio"].item() == pytest.approx(math.exp((LN2 - 0.5) / 3))
    assert m["is_masked"].tolist() == [0.0, 0.0, 0.0]
    assert m["unmasked_mismatch_kl"].item() == pytest.approx(m["mismatch_kl"].item())
    assert m["masked_mismatch_kl"].item() == 0.0


def test_loss_is_a_sum_over_loss_tokens_only():
    loss, grad, m = run(inputs([0.0, 5.0, LN2], mask=[True, False, True]))  # ratio e^5 > 8 but not a loss token
    assert loss == pytest.approx(1 + 6)
    assert grad == pytest.approx([-1.0, 0.0, -2.0])
    assert m["is_masked"].tolist() == [0.0, 0.0]  # one value per loss token
    assert m["geo_seq_ratio"].item() == pytest.approx(math.exp(LN2 / 2))


def test_token_mask_low_and_high():
    loss, grad, m = run(inputs([0.0, math.log(0.1), math.log(9.0)]))
    assert loss == pytest.approx(1.0)
    assert grad == pytest.approx([-1.0, 0.0, 0.0])
    assert m["is_masked_low"].tolist() == [0.0, 1.0, 0.0]
    assert m["is_masked_high"].tolist() == [0.0, 0.0, 1.0]
    assert m["is_masked"].tolist() == [0.0, 1.0, 1.0]
    kl = [0.1 - math.log(0.1) - 1, 9 - math.log(9.0) - 1]
    assert m["masked_mismatch_kl"].item() == pytest.approx(sum(kl) / 2)
    assert m["unmasked_mismatch_kl"].item() == 0.0


@pytest.mark.parametrize(
    ("ratios", "cfg", "flag"),
    [
        ([0.2, 1.0], {"geo_mask_low": 0.5}, "geo_masked_low"),  # geo = sqrt(0.2) = 0.447
        ([4.0, 4.0], {"geo_mask_high": 2.0}, "geo_masked_high"),  # geo = 4
        ([0.4, 1.5, 1.0], {"sequence_mask_low": 0.5}, "sequence_masked_low"),  # min 0.4
        ([3.0, 1.0], {"sequence_mask_high": 2.0}, "sequence_masked_high"),  # max 3
    ],
)
def test_sequence_level_masks_drop_the_whole_sequence(ratios, cfg, flag):
    loss, grad, m = run(inputs([math.log(r) for r in ratios]), **cfg)
    assert loss == 0.0
    assert grad == [0.0] * len(ratios)
    assert m[flag].item() == 1.0
    assert m["is_masked"].tolist() == [1.0] * len(ratios)
    assert m["is_masked_low"].tolist() == [0.0] * len(ratios)  # token-level flags only
    others = {"geo_masked_low", "geo_masked_high", "sequence_masked_low", "sequence_masked_high"} - {flag}
    assert all(m[name].item() == 0.0 for name in others)


def test_sequence_mask_ignores_tokens_outside_the_loss_mask():
    loss, _, m = run(inputs([math.log(0.4), 0.0], mask=[False, True]), sequence_mask_low=0.5)
    assert loss == pytest.approx(2.0)
    assert m["sequence_masked_low"].item() == 0.0


def test_sequence_ratio_is_clipped_detached_and_normalised_by_length():
    # loss tokens 0 and 1 (sum of log ratios 0.3), token 2 is outside the mask; advantage 2
    inp = inputs([0.1, 0.2, 3.0], adv=2.0, mask=[True, True, False])
    loss, grad, _ = run(inp, ratio_type="sequence")
    w = math.exp(0.3)
    assert loss == pytest.approx(-w * 2 * (-1 - 2) / 2)
    assert grad == pytest.approx([-w * 2 / 2, -w * 2 / 2, 0.0])
    loss, grad, _ = run(inp, ratio_type="sequence", sequence_clip_high=1.2)
    assert loss == pytest.approx(1.2 * 2 * 3 / 2)
    assert grad == pytest.approx([-1.2, -1.2, 0.0])


def test_sequence_ratio_log_is_capped_at_10():
    inp = inputs([6.0, 6.0], adv=1.0)  # sum 12 → exp(10); token masks widened so nothing is masked
    cfg = {"ratio_type": "sequence", "sequence_clip_high": 1e9, "token_mask_high": 1e9, "geo_mask_high": 1e9}
    loss, grad, _ = run(inp, **cfg, sequence_mask_high=1e9)
    assert loss == pytest.approx(math.exp(10) * 3 / 2)
    assert grad == pytest.approx([-math.exp(10) / 2] * 2)


def test_kl_tau_and_adv_tau():
    # coefficient = ratio * (adv_tau * A - kl_tau * r) = e^0.5 * (0.5 * 2 - 0.1 * 0.5)
    loss, grad, _ = run(inputs([0.5], lp=[-2.0], adv=2.0), kl_tau=0.1, adv_tau=0.5)
    coeff = math.exp(0.5) * (1.0 - 0.05)
    assert loss == pytest.approx(2 * coeff)
    assert grad == pytest.approx([-coeff])


def test_teacher_term_is_added_to_the_advantage_detached():
    # A' = A + teacher_tau * (teacher - trainer) = 1 + 0.5 * (-0.5 - -1), -0.5 - -2 for the two tokens
    inp = inputs([0.0, 0.0], adv=1.0, teacher=[-0.5, -0.5])
    loss, grad, m = run(inp, teacher_tau=0.5)
    a = [1 + 0.5 * 0.5, 1 + 0.5 * 1.5]
    assert loss == pytest.approx(a[0] * 1 + a[1] * 2)
    assert grad == pytest.approx([-a[0], -a[1]])
    assert m["teacher_kl"].item() == pytest.approx((-0.5 - 1.5) / 2)
    assert "teacher_kl" not in run(inputs([0.0]))[2]


def test_empty_mask_gives_zero_loss_with_grad_and_empty_token_metrics():
    inp = inputs([0.3, -0.2], mask=[False, False])
    out = default_loss_fn(inp, LossConfig())
    assert out.loss.item() == 0.0 and out.loss.requires_grad
    for cfg in ({}, {"ratio_type": "sequence"}):
        loss, grad, m = run(inp, **cfg)
        assert (loss, grad) == (0.0, [0.0, 0.0])
    assert m["is_masked"].shape == (0,)
    assert m["mismatch_kl"].item() == 0.0
    assert m["geo_seq_ratio"].item() == 1.0


def test_infinite_ratio_on_a_masked_token_keeps_gradients_finite():
    inp = inputs([0.0, 1000.0])  # exp overflows to inf; the token is masked (and so is the sequence by geo)
    _, grad, _ = run(inp, geo_mask_high=1e308, sequence_mask_high=float("inf"))
    assert grad == [-1.0, 0.0]


def test_metric_shapes_and_keys():
    out = default_loss_fn(inputs([0.0, 0.1, 0.2]), LossConfig())
    scalars = {k for k, v in out.metrics.items() if v.ndim == 0}
    tokens = {k for k, v in out.metrics.items() if v.ndim == 1}
    assert scalars == {
        "mismatch_kl",
        "masked_mismatch_kl",
        "unmasked_mismatch_kl",
        "sequence_masked_low",
        "sequence_masked_high",
        "geo_masked_low",
        "geo_masked_high",
        "geo_seq_ratio",
    }
    assert tokens == {"is_masked", "is_masked_low", "is_masked_high"}


@pytest.mark.parametrize(
    ("field", "low", "high"), [("token_mask", 8.0, 8.0), ("geo_mask", 11.0, 10.0), ("sequence_mask", 5.0, 1.0)]
)
def test_mask_bounds_must_be_ordered(field, low, high):
    with pytest.raises(ValueError, match=rf"{field}_low \({low}\) must be less than {field}_high \({high}\)"):
        LossConfig(**{f"{field}_low": low, f"{field}_high": high})


def test_mask_bounds_error_through_the_parser():
    from prime_rl.trainer.rl.config import LossConfigType
    from prime_rl.utils.config import BaseSettingsConfig, parse_config

    class Config(BaseSettingsConfig):
        loss: LossConfigType = LossConfig()

    with pytest.raises(ConfigError) as e:
        parse_config(Config, ["--loss.geo-mask-low", "20"])
    assert (
        str(e.value)
        == "invalid config (command line): `loss`: geo_mask_low (20.0) must be less than geo_mask_high (10.0)"
    )


def test_compute_loss_sums_divides_by_loss_scale_and_aggregates_metrics():
    seqs = [inputs([0.0, -0.5, LN2]), inputs([0.0], lp=[-4.0], adv=-1.0), inputs([0.2, 0.1], mask=[False, False])]
    loss_fn = setup_loss_fn(LossConfig())
    loss, metrics = compute_loss(
        [s.trainer_logprobs for s in seqs],
        [s.inference_logprobs for s in seqs],
        None,
        [s.advantages for s in seqs],
        [s.loss_mask for s in seqs],
        loss_fn,
        loss_scale=4,
    )
    assert loss.item() == pytest.approx((1 + 2 * math.exp(-0.5) + 6 - 4) / 4)
    assert metrics["mismatch_kl"].shape == (3,)  # 0-d per sequence → stacked
    assert metrics["is_masked"].shape == (4,)  # per loss token → concatenated
    assert metrics["geo_seq_ratio"].tolist() == pytest.approx([math.exp((LN2 - 0.5) / 3), 1.0, 1.0])
    assert not any(v.requires_grad for v in metrics.values())


def test_compute_loss_passes_teacher_logprobs_per_sequence():
    seen = []

    def loss_fn(inp: LossInputs) -> LossOutputs:
        seen.append(inp.teacher_logprobs.tolist())
        return LossOutputs(loss=inp.trainer_logprobs.sum(), metrics={})

    lp = [torch.tensor([-1.0], requires_grad=True), torch.tensor([-2.0, -3.0], requires_grad=True)]
    teacher = [torch.tensor([-0.5]), torch.tensor([-0.7, -0.8])]
    loss, _ = compute_loss(lp, lp, teacher, lp, [torch.tensor([True]), torch.tensor([True, True])], loss_fn, 2)
    assert seen == [[-0.5], pytest.approx([-0.7, -0.8])]
    assert loss.item() == -3.0


def test_setup_loss_fn_binds_the_default_config():
    cfg = LossConfig(kl_tau=0.1)
    loss_fn = setup_loss_fn(cfg)
    inp = inputs([0.5], lp=[-2.0])
    assert loss_fn(inp).loss.item() == default_loss_fn(inp, cfg).loss.item()


def test_setup_loss_fn_rejects_bad_import_paths(tmp_path, monkeypatch):
    from prime_rl.trainer.rl.config import CustomLossConfig

    monkeypatch.chdir(tmp_path)
    (tmp_path / "loss_paths_mod.py").write_text("def my_loss(inputs, scale=1.0):\n    pass\n\nmy_value = 3\n")
    cases = {
        "no_such_module_xyz.fn": "module `no_such_module_xyz` not found",
        "loss_paths_mod.my_los": "module `loss_paths_mod` has no attribute `my_los` (close names: my_loss)",
        "loss_paths_mod.my_value": "`my_value` is not callable",
        "loss_paths_mod": "must look like `pkg.module.fn` or `pkg.module:fn`",
    }
    for path, message in cases.items():
        with pytest.raises(ConfigError, match=f"import_path `{path}`.*{re.escape(message)}"):
            setup_loss_fn(CustomLossConfig(import_path=path))
    with pytest.raises(ConfigError, match=r"import_path `loss_paths_mod:my_loss`: kwargs \{'clip': 1\} do not fit"):
        setup_loss_fn(CustomLossConfig(import_path="loss_paths_mod:my_loss", kwargs={"clip": 1}))
    assert callable(setup_loss_fn(CustomLossConfig(import_path="loss_paths_mod:my_loss", kwargs={"scale": 2})))


def test_teacher_tau_without_a_teacher_is_refused_by_rl_and_by_the_trainer(tmp_path):
    from prime_rl.launcher.checks import check_teacher
    from prime_rl.launcher.config import RLConfig
    from prime_rl.trainer.rl.config import RLTrainerConfig
    from prime_rl.trainer.rl.data import check_teacher as check_batch
    from prime_rl.transport.types import TrainingBatch, TrainingSample
    from prime_rl.utils.config import parse_config

    toml = tmp_path / "rl.toml"
    toml.write_text("[trainer.loss]\nteacher_tau = 0.5\n")
    with pytest.raises(ConfigError) as e:
        check_teacher(parse_config(RLConfig, ["@", str(toml)]))
    assert str(e.value) == (
        f"{toml}: `trainer.loss.teacher_tau` = 0.5 needs a teacher: add a `[teacher]` table (rl starts that server) "
        "or `[orchestrator.teacher]` (a running server)"
    )
    check_teacher(parse_config(RLConfig, ["@", str(toml), "--orchestrator.teacher.client.base-url", "http://t/v1",
                                          "--orchestrator.teacher.model.name", "t"]))  # fmt: skip
    # The trainer alone cannot see the orchestrator's config: it refuses a batch without teacher logprobs.
    trainer = parse_config(RLTrainerConfig, ["--loss.teacher-tau", "0.5"])
    sample = TrainingSample([1], [2], [True], [-0.1], [1.0], 0.0, 0.0, 0)
    with pytest.raises(ValueError, match=r"step 3: sample 0 has no teacher logprobs but trainer.loss.teacher_tau > 0"):
        check_batch(TrainingBatch(step=3, samples=[sample]), 3, trainer.needs_teacher)
    sample.completion_teacher_logprobs = [-0.2]
    check_batch(TrainingBatch(step=3, samples=[sample]), 3, trainer.needs_teacher)
    assert not parse_config(RLTrainerConfig, ["--loss.teacher-tau", "0"]).needs_teacher
