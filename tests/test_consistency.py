"""Consistency scoring: the shapes classifier scorer on real images, the prompt-wins rule, the learned matcher
(train, save, reload, CLI), `load_scorer`'s choices and errors, PSNR, and the new `llmgan eval` figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from llmgan.cli.app import app
from llmgan.data.tables import decode_images, write_dataset
from llmgan.domains import get_domain
from llmgan.domains.digits.dataset import generate_digits
from llmgan.domains.shapes import vocab
from llmgan.domains.shapes.render import generate_shapes, make_caption
from llmgan.errors import UserError
from llmgan.eval import metrics
from llmgan.eval.consistency import ClassifierScorer, MatcherScorer, load_scorer, stated_attributes
from llmgan.gan.matcher import Matcher, MatcherConfig, fit_platt, make_matcher_state, matcher_step, roc_auc

runner = CliRunner()


@pytest.fixture(scope="module")
def real_shapes() -> dict:
    table = generate_shapes(40, seed=77, split="all")
    labels = [{a: table[a][i].as_py() for a in vocab.ATTRIBUTES} for i in range(40)]
    return {"images": decode_images(table["image"].to_pylist()), "captions": table["caption"].to_pylist(),
            "labels": labels}


@pytest.fixture(scope="module")
def scorer() -> ClassifierScorer:
    return ClassifierScorer(get_domain("shapes"))


def _changed(labels: list[dict], attr: str, seed: int = 0) -> list[str]:
    """Captions with `attr` set to another value, worded by the dataset's own caption maker."""
    rng = np.random.default_rng(seed)
    out = []
    for lab in labels:
        other = [v for v in vocab.VALUES[attr] if v != lab[attr]]
        out.append(make_caption({**lab, attr: str(rng.choice(other))}, rng))
    return out


def test_shapes_scorer_high_for_true_captions_low_for_a_changed_attribute(real_shapes: dict,
                                                                          scorer: ClassifierScorer) -> None:
    images, captions, n = real_shapes["images"], real_shapes["captions"], len(real_shapes["captions"])
    right = scorer.score(images, captions, [""] * n)
    assert min(r.score for r in right) > 0.8 and all(r.disagree == () for r in right)
    for attr in ("shape", "color", "position"):
        wrong = scorer.score(images, _changed(real_shapes["labels"], attr), [""] * n)
        assert max(r.score for r in wrong) < 0.2, attr
        assert all(r.disagree == (attr,) for r in wrong), [r.disagree for r in wrong]


def test_prompt_wins_over_caption(real_shapes: dict, scorer: ClassifierScorer) -> None:
    lab = real_shapes["labels"][0]
    image = real_shapes["images"][:1]
    wrong_shape = next(s for s in vocab.SHAPES if s != lab["shape"])
    caption_wrong = make_caption({**lab, "shape": wrong_shape}, np.random.default_rng(1))
    # the caption LM changed the shape; the image follows the user's prompt -> consistent
    r = scorer.score(image, [caption_wrong], [f"{lab['color']} {lab['shape']}"])[0]
    assert r.score > 0.8 and r.disagree == ()
    # the caption is right but the prompt asked for another shape -> the prompt wins: inconsistent
    r = scorer.score(image, [real_shapes["captions"][0]], [f"a {wrong_shape}"])[0]
    assert r.score < 0.2 and r.disagree == ("shape",)
    # attributes only the caption states still count
    other_bg = next(b for b in vocab.BACKGROUNDS if b != lab["background"])
    caption_bg = make_caption({**lab, "background": other_bg}, np.random.default_rng(2))
    r = scorer.score(image, [caption_bg], [lab["shape"]])[0]
    assert r.score < 0.2 and r.disagree == ("background",)
    assert stated_attributes(get_domain("shapes"), "a red star on a navy background", "blue star") == {
        "shape": ["star"], "color": ["blue"], "background": ["navy"]}
    # nothing checkable stated: nothing to contradict
    assert scorer.score(image, ["a nice picture"], ["something"])[0] == scorer.score(image, [""], [""])[0]
    assert scorer.score(image, ["a nice picture"], [""])[0].score == 1.0


def test_scorer_input_errors_are_user_errors(real_shapes: dict, scorer: ClassifierScorer) -> None:
    with pytest.raises(UserError, match="one caption and one prompt per image"):
        scorer.score(real_shapes["images"][:2], ["a"], ["a", "b"])
    with pytest.raises(UserError, match="N, H, W, 3"):
        scorer.score(real_shapes["images"][0], ["a"], ["a"])


def test_matcher_step_learns_and_platt_is_monotone() -> None:
    cfg = MatcherConfig(width=8, dim=16, text_dim=12, batch_size=8, pool=0, lr=3e-3)
    state = make_matcher_state(cfg, seed=0)
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(8, 3, 32, 32, generator=gen) * 2 - 1
    emb = torch.nn.functional.normalize(torch.randn(8, 12, generator=gen), dim=-1)
    losses = [matcher_step(state, images, emb) for _ in range(40)]
    assert state.step == 40 and losses[-1] < 0.5 * losses[0]
    a, b = fit_platt(np.array([0.8, 0.7, 0.9, 0.6]), np.array([0.1, 0.3, 0.2, 0.65]))
    assert a > 0 and a * 0.9 + b > 0 > a * 0.1 + b
    a2, b2 = fit_platt(np.array([0.9, 0.95]), np.array([0.1, 0.2]))  # separable: still finite
    assert 0 < a2 < 1e3 and math.isfinite(b2)
    assert roc_auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert roc_auc(np.array([1.0]), np.array([1.0])) == 0.5


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A small shapes and digits dataset, a matcher trained by the CLI, and GAN checkpoints trained 'on' each."""
    from llmgan.gan.checkpoint import save_checkpoint
    from llmgan.gan.config import GanConfig
    from llmgan.gan.step import make_train_state

    root = tmp_path_factory.mktemp("consistency")
    write_dataset(generate_shapes(64, seed=3, split="all"), str(root / "shapes.parquet"))
    write_dataset(generate_digits(limit=30), str(root / "digits.parquet"))
    result = runner.invoke(app, ["train-matcher", "--data", str(root / "shapes.parquet"), "--out", str(root / "m"),
                                 "--steps", "5", "--batch-size", "16", "--pool", "16", "--width", "8", "--dim", "16"])
    assert result.exit_code == 0, result.output
    assert "trained matcher on" in result.output and "AUC" in result.output
    state = make_train_state(GanConfig(g_width=8, d_width=8, z_dim=16, cond_dim=16, contrastive_dim=16), seed=0)
    for name, domain in (("gan_shapes", "shapes"), ("gan_digits", "digits"), ("gan_plain", None)):
        save_checkpoint(str(root / name), state, training_state=False, extra={"domain": domain} if domain else None)
    return {"root": str(root), "matcher": str(root / "m")}


def test_matcher_saves_reloads_and_scores_in_unit_interval(tiny: dict[str, str], real_shapes: dict) -> None:
    m = Matcher.load(tiny["matcher"])
    meta = json.loads((Path(tiny["matcher"]) / "matcher.json").read_text())
    assert meta["format"] == "llmgan-matcher" and set(meta["calibration"]) == {"a", "b"}
    assert (Path(tiny["matcher"]) / "matcher.safetensors").exists()
    assert m.info["steps"] == 5 and 0 <= m.info["val"]["auc_hard_negative"] <= 1
    scorer = load_scorer(tiny["matcher"], None)
    assert isinstance(scorer, MatcherScorer) and scorer.name == "matcher"
    images, captions = real_shapes["images"][:12], real_shapes["captions"][:12]
    first = [r.score for r in scorer.score(images, captions, [""] * 12)]
    assert all(0.0 <= s <= 1.0 for s in first)
    again = [r.score for r in MatcherScorer(Matcher.load(tiny["matcher"]), get_domain("shapes")).score(
        images, captions, [""] * 12)]
    assert np.allclose(first, again, atol=1e-6)
    # given embeddings give the same scores as encoding the captions itself
    emb = scorer._encode(captions)
    assert np.allclose([r.score for r in scorer.score(images, captions, [""] * 12, emb=emb)], first, atol=1e-6)
    with pytest.raises(UserError, match="text encoder it was trained with"):
        scorer.score(images, captions, [""] * 12, emb=np.zeros((12, 5), np.float32))


def test_load_scorer_picks_as_documented(tiny: dict[str, str]) -> None:
    import shutil

    root = Path(tiny["root"])
    assert load_scorer("auto", None).name == "shapes-classifier"  # the shipped GAN learned shapes
    assert load_scorer(None, None).name == "shapes-classifier"
    assert load_scorer("auto", str(root / "gan_shapes")).name == "shapes-classifier"  # its recorded domain
    assert load_scorer("auto", str(root / "gan_digits")) is None
    assert load_scorer("auto", str(root / "gan_plain")) is None
    assert load_scorer("none", None) is None
    with pytest.raises(UserError, match="digits domain .* has no attribute classifier"):
        load_scorer("classifier", str(root / "gan_digits"))
    # a matcher in the checkpoint folder: "auto" keeps the classifier for a shapes GAN, takes it otherwise
    for gan in ("gan_shapes", "gan_digits"):
        for f in ("matcher.json", "matcher.safetensors"):
            shutil.copy(Path(tiny["matcher"]) / f, root / gan / f)
    try:
        assert load_scorer("auto", str(root / "gan_shapes")).name == "shapes-classifier"
        assert load_scorer("matcher", str(root / "gan_shapes")).source == str(root / "gan_shapes")
        picked = load_scorer("auto", str(root / "gan_digits"))
        assert isinstance(picked, MatcherScorer) and picked.source == str(root / "gan_digits")
    finally:
        for gan in ("gan_shapes", "gan_digits"):
            for f in ("matcher.json", "matcher.safetensors"):
                (root / gan / f).unlink()
    with pytest.raises(UserError, match="has no matcher.json"):
        load_scorer("matcher", str(root / "gan_digits"))


def test_shipped_matcher_separates_true_from_changed_captions(real_shapes: dict) -> None:
    scorer = load_scorer("matcher", None)  # the shipped GAN has no matcher of its own: the shipped shapes matcher
    assert isinstance(scorer, MatcherScorer) and scorer.source == get_domain("shapes").fallback_matcher()
    images, n = real_shapes["images"], len(real_shapes["images"])
    right = np.array([r.score for r in scorer.score(images, real_shapes["captions"], [""] * n)])
    wrong = np.array([r.score for r in scorer.score(images, _changed(real_shapes["labels"], "shape", 5), [""] * n)])
    assert roc_auc(right, wrong) > 0.95 and right.mean() > 0.8 and wrong.mean() < 0.3
    # the prompt is the reference: a caption that contradicts it is not what the image is judged against
    prompts = [f"{lab['color']} {lab['shape']}" for lab in real_shapes["labels"]]
    judged = [r.score for r in scorer.score(images, _changed(real_shapes["labels"], "shape", 5), prompts)]
    assert np.allclose(judged, scorer.matcher.probability(images, scorer._encode(prompts), text="prompt"), atol=1e-6)
    # a prompt word the domain did not understand: the score is kept but certifies nothing
    v = scorer.score(images[:1], ["a red star"], ["a red dragon"])[0]
    assert v.not_understood == ("dragon",) and v.certified is None


def test_bad_spec_is_one_line_user_error(tmp_path: Path) -> None:
    for spec in ("bogus", str(tmp_path)):
        with pytest.raises(UserError) as exc:
            load_scorer(spec, None)
        assert "\n" not in str(exc.value) and "--consistency" in str(exc.value)
    (tmp_path / "matcher.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_scorer(str(tmp_path), None)
    result = runner.invoke(app, ["train-matcher", "--data", "x.parquet", "--out", str(tmp_path / "o"),
                                 "--batch-size", "1"])
    assert result.exit_code == 2 and result.output.strip().splitlines()[-1].startswith("error: --batch-size")


def test_psnr_known_values() -> None:
    zeros = np.zeros((2, 8, 8, 3), np.float32)
    assert np.all(np.isinf(metrics.psnr(zeros, zeros)))
    assert np.allclose(metrics.psnr(zeros, zeros + 0.1), 20.0)  # MSE 0.01 -> 20 dB
    black, white = np.zeros((1, 4, 4, 3), np.uint8), np.full((1, 4, 4, 3), 255, np.uint8)
    assert np.allclose(metrics.psnr(black, white), 0.0)  # uint8 is scaled to 0..1
    half = np.zeros((1, 4, 4, 3), np.float32)
    half[:, :2] = 1.0  # half the pixels off by 1 -> MSE 0.5
    assert np.allclose(metrics.psnr(half, np.zeros_like(half)), 10 * math.log10(2))
    with pytest.raises(ValueError, match="same shape"):
        metrics.psnr(zeros, np.zeros((2, 4, 4, 3)))


def test_eval_reports_consistency_and_reference_figures(tiny: dict[str, str], tmp_path: Path) -> None:
    from llmgan.eval.report import evaluate

    report = evaluate(None, str(Path(tiny["root"]) / "shapes.parquet"), str(tmp_path / "r"), n=12, seed=1,
                      split="all")
    assert report["consistency_scorer"]["name"] == "shapes-classifier"
    split = report["splits"]["all"]
    cons = split["consistency"]
    assert cons["scorer"] == "shapes-classifier" and cons["generated"]["n"] == 12
    assert 0 <= cons["generated"]["below_0.5"] <= 1 and cons["real"]["mean"] > 0.9 and cons["real"]["below_0.5"] == 0
    ref = split["reference"]
    assert -1 <= ref["ssim"] <= 1 and 0 < ref["psnr"] < 100
    from llmgan.cli.eval_cmd import _table

    lines = _table(report).splitlines()
    assert any(ln.startswith("consistency ") and f"{cons['generated']['mean']:.3f}" in ln for ln in lines)
    assert any(ln.startswith("ref PSNR ") and f"{ref['psnr']:.3f}" in ln for ln in lines)
    on_disk = json.loads((tmp_path / "r" / "report.json").read_text())
    assert on_disk["splits"]["all"]["reference"]["psnr"] == pytest.approx(ref["psnr"])
    digits = evaluate(None, str(Path(tiny["root"]) / "digits.parquet"), str(tmp_path / "d"), n=10,
                      consistency="none", classifier_steps=5)
    assert digits["splits"]["all"]["consistency"] is None and digits["splits"]["all"]["reference"] is None


def test_benchmark_agreement_figures_and_calibration_plot(tmp_path: Path) -> None:
    from PIL import Image

    from benchmarks.consistency import agreement, calibration_png

    pos, neg = np.array([0.9, 0.8, 0.7, 0.95]), np.array([0.1, 0.6, 0.2, 0.05])
    fig = agreement(pos, neg, ["shape", "shape", "color", "size"])
    assert fig["auc"] == 1.0 and fig["accuracy_at_best"] == 1.0 and fig["accuracy_at_0.5"] == 0.875
    assert fig["by_changed_attribute"]["shape"] == {"n": 2, "auc": 1.0, "caught_at_0.5": 0.5}
    assert sum(b["n"] for b in fig["reliability"]) == 8 and 0 <= fig["ece"] <= 1
    swapped = agreement(neg, pos, ["shape"] * 4)
    assert swapped["auc"] == 0.0 and swapped["accuracy_at_0.5"] == 0.125
    calibration_png({"a": fig["reliability"], "b": swapped["reliability"]}, str(tmp_path / "c.png"))
    with Image.open(tmp_path / "c.png") as img:
        assert img.format == "PNG" and img.width > 300
