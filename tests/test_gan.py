"""GAN: network shapes, the training step, checkpoints (local + S3), inference determinism and reranking, CLIs."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from llmgan.cli.app import app
from llmgan.errors import UserError
from llmgan.gan.checkpoint import GENERATOR, save_checkpoint
from llmgan.gan.config import GanConfig
from llmgan.gan.inference import GanModel
from llmgan.gan.networks import Discriminator, Generator
from llmgan.gan.step import make_train_state, train_step
from llmgan.io.storage import Storage

TINY = dict(g_width=4, d_width=4, z_dim=8, text_dim=16, cond_dim=8, contrastive_dim=8, batch_size=4)


def _emb(n: int, dim: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)), dim=1)


@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_network_shapes_at_each_resolution(size: int) -> None:
    cfg = GanConfig(image_size=size, **TINY)
    G, D = Generator(cfg), Discriminator(cfg)
    x = G(torch.randn(2, cfg.z_dim), _emb(2))
    assert x.shape == (2, 3, size, size)
    assert float(x.detach().abs().max()) <= 1.0
    out = D(x, _emb(2), _emb(2, seed=1))
    assert out.uncond.shape == out.cond.shape == out.cond_wrong.shape == (2,)
    assert out.image_vec.shape == out.text_vec.shape == (2, cfg.contrastive_dim)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in D.modules())


def test_config_validation_names_the_field() -> None:
    with pytest.raises(UserError, match="image_size"):
        GanConfig(image_size=48)
    with pytest.raises(UserError, match="lr_d"):
        GanConfig(lr_d=0)
    with pytest.raises(UserError, match="augment"):
        GanConfig(augment=("colour",))
    cfg = GanConfig(augment="translation")
    assert GanConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_training_steps_reduce_d_loss_on_a_tiny_batch() -> None:
    torch.manual_seed(0)
    # G nearly frozen (tiny lr) so the D loss is not a moving target; the G update still runs
    cfg = GanConfig(**{**TINY, "g_width": 8, "d_width": 8}, contrastive_weight=0.0, augment=(), lr_g=1e-9)
    state = make_train_state(cfg, seed=0)
    # fixed real batch: coloured squares, one caption each
    images = torch.full((4, 3, 32, 32), -0.8)
    for i in range(4):
        images[i, i % 3, 8:24, 8:24] = 0.9
    emb = _emb(4)
    losses = [train_step(state, images, emb, step)["loss_d"] for step in range(1, 31)]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5
    assert all(np.isfinite(losses))


def test_contrastive_pool_adds_negatives_and_masks_copies_of_the_right_caption() -> None:
    from llmgan.gan.losses import contrastive, same_caption

    emb = _emb(4)
    img = torch.nn.functional.normalize(emb + 0.1 * torch.randn(4, 16), dim=1)
    same = same_caption(emb, emb)
    base = contrastive(img, emb, same, 0.1)
    # one image whose pool holds only copies of its own caption: nothing to tell apart once masked
    copies = emb[:1].repeat(3, 1)
    masked = contrastive(img[:1], emb[:1], same[:1, :1], 0.1, copies, same_caption(emb[:1], copies))
    assert float(masked) == pytest.approx(0.0, abs=1e-6)
    harder = contrastive(img, emb, same, 0.1, _emb(64, seed=5), same_caption(emb, _emb(64, seed=5)))
    assert harder > base
    state = make_train_state(GanConfig(**TINY, contrastive_pool=8), seed=0)
    m = train_step(state, torch.rand(4, 3, 32, 32) * 2 - 1, emb, 1, pool=_emb(8, seed=2))
    assert np.isfinite(m["d_contrastive"]) and np.isfinite(m["g_contrastive"])


def _state(tmp_cfg: GanConfig | None = None):
    cfg = tmp_cfg or GanConfig(**TINY)
    state = make_train_state(cfg, seed=1)
    with torch.no_grad():  # make EMA differ from a fresh init so the round trip is meaningful
        for p in state.G_ema.parameters():
            p.add_(0.01 * torch.randn_like(p))
    state.step = 7
    return state


@pytest.mark.parametrize("where", ["local", "s3"])
def test_checkpoint_round_trip_gives_identical_outputs(tmp_path: Path, where: str, request: pytest.FixtureRequest) -> None:
    if where == "s3":
        url = request.getfixturevalue("s3_url") + "/ckpt"
        storage = Storage(request.getfixturevalue("s3_server"))
    else:
        url, storage = str(tmp_path / "ckpt"), Storage()
    state = _state()
    save_checkpoint(url, state, storage=storage, text_encoder=None, dataset="tiny")
    model = GanModel.load(url, storage=storage, discriminator=True)
    assert model.meta["step"] == 7 and model.image_size == 32 and model.z_dim == TINY["z_dim"]
    emb, z = _emb(3), torch.randn(3, TINY["z_dim"])
    with torch.no_grad():
        expected = state.G_ema(z, emb)
        expected_score = state.D(expected, emb).cond
    got = model.generate(emb.numpy(), z)
    want = ((expected.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(got, want)
    with torch.no_grad():
        np.testing.assert_allclose(
            model.score(got, emb), state.D(torch.from_numpy(got).permute(0, 3, 1, 2).float() / 127.5 - 1, emb).cond.numpy(),
            rtol=1e-5, atol=1e-5,
        )
    assert expected_score.shape == (3,)
    assert model.identity == GanModel.load(url, storage=storage).identity


class _Boom:
    def __reduce__(self):
        return (Path.write_text, (Path(_Boom.marker), "pwned"))


def test_inference_refuses_pickled_weights(tmp_path: Path) -> None:
    url = tmp_path / "ckpt"
    save_checkpoint(str(url), _state(), training_state=False)
    _Boom.marker = str(tmp_path / "marker")
    (url / GENERATOR).write_bytes(pickle.dumps({"w": _Boom()}))
    with pytest.raises(UserError, match="not a safetensors file"):
        GanModel.load(str(url))
    assert not (tmp_path / "marker").exists()
    torch.save(Generator(GanConfig(**TINY)).state_dict(), url / GENERATOR)
    with pytest.raises(UserError, match="not a safetensors file"):
        GanModel.load(str(url))


def test_mismatched_config_and_weights_is_a_clear_error(tmp_path: Path) -> None:
    url = tmp_path / "ckpt"
    save_checkpoint(str(url), _state(), training_state=False)
    meta = json.loads((url / "config.json").read_text())
    meta["model"]["g_width"] = 8
    (url / "config.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="do not match"):
        GanModel.load(str(url))
    with pytest.raises(UserError, match="no GAN checkpoint"):
        GanModel.load(str(tmp_path / "missing"))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> GanModel:
    url = tmp_path_factory.mktemp("model") / "ckpt"
    save_checkpoint(str(url), _state(), training_state=False)
    return GanModel.load(str(url), discriminator=True)


def test_sample_is_deterministic_whatever_the_batch(tiny_model: GanModel) -> None:
    emb = _emb(5).numpy()
    images, scores = tiny_model.sample(emb, [10, 11, 12, 13, 14])
    assert images.shape == (5, 32, 32, 3) and images.dtype == np.uint8 and np.isnan(scores).all()
    again, _ = tiny_model.sample(emb[[3, 1]], [13, 11])
    np.testing.assert_array_equal(again, images[[3, 1]])
    other, _ = tiny_model.sample(emb, [20, 21, 22, 23, 24])
    assert not np.array_equal(other, images)
    np.testing.assert_array_equal(tiny_model.noise([5, 6])[1], tiny_model.noise([6])[0])


def test_best_of_picks_the_highest_scoring_candidate(tiny_model: GanModel) -> None:
    from llmgan.io.seeds import derive_seed

    emb = _emb(3).numpy()
    seeds = [1, 2, 3]
    best, best_scores = tiny_model.sample(emb, seeds, best_of=4)
    for i, s in enumerate(seeds):
        cand_seeds = [s] + [derive_seed(s, k) for k in range(1, 4)]
        cands = tiny_model.generate(np.repeat(emb[i : i + 1], 4, 0), tiny_model.noise(cand_seeds))
        scores = tiny_model.score(cands, np.repeat(emb[i : i + 1], 4, 0))
        np.testing.assert_array_equal(best[i], cands[int(np.argmax(scores))])
        assert best_scores[i] == pytest.approx(scores.max(), abs=1e-5)
    # each row alone picks the same winner as in the batch
    alone, _ = tiny_model.sample(emb[2:], seeds[2:], best_of=4)
    np.testing.assert_array_equal(alone[0], best[2])
    with pytest.raises(UserError, match="discriminator"):
        GanModel.load(tiny_model.path).score(best, emb)


# ---- CLIs ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> str:
    from llmgan.data.tables import write_dataset
    from llmgan.domains.shapes.render import generate_shapes

    url = str(tmp_path_factory.mktemp("data") / "shapes.parquet")
    write_dataset(generate_shapes(24, seed=3), url)
    return url


def test_train_local_cli_end_to_end_with_resume_and_sample(tiny_data: str, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "run"
    args = ["train", "--local", "--data", tiny_data, "--out", str(out), "--batch-size", "4", "--g-width", "4",
            "--d-width", "4", "--checkpoint-every", "2", "--sample-every", "2", "--eval-every", "2", "--threads", "1"]
    first = runner.invoke(app, [*args, "--steps", "2"])
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 2 and summary["start_step"] == 0
    assert (out / "checkpoints" / "00000002" / "training_state.pt").exists()
    assert (out / "samples" / "00000002.png").exists()

    second = runner.invoke(app, [*args, "--steps", "6"])
    assert second.exit_code == 0, second.output
    summary = json.loads(second.stdout.strip().splitlines()[-1])
    assert summary["start_step"] == 2 and summary["steps"] == 6 and summary["steps_this_run"] == 4
    recorded = json.loads((out / "options.json").read_text())  # the resolved options beside the run
    assert recorded["runtime"] == "local" and recorded["data"] == tiny_data and recorded["model"]["g_width"] == 4
    assert recorded["options"]["steps"] == 6 and recorded["options"]["threads"] == 1 and recorded["evaluate"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # at each checkpoint/evaluation (every 2 steps here; log_every is 50) and at the end of each run
    assert [r["step"] for r in rows] == [2, 4, 6]
    assert all(np.isfinite(r["loss_d"]) and r["imgs_per_s"] > 0 for r in rows)
    assert json.loads((out / "final" / "config.json").read_text())["step"] == 6
    # the newest two are kept; the pruned one leaves no empty folder behind
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["00000004", "00000006"]

    # a run directory loads its newest checkpoint; export copies only the inference files
    assert GanModel.load(str(out)).meta["step"] == 6
    from llmgan.gan.checkpoint import export_checkpoint

    export_checkpoint(str(out), str(tmp_path / "exported"))
    assert sorted(p.name for p in (tmp_path / "exported").iterdir()) == [
        "config.json", "discriminator.safetensors", "generator.safetensors", "matcher.json", "matcher.safetensors"]

    # warm start: a new run from the exported weights continues their step count with the same networks
    exported, warm = tmp_path / "exported", tmp_path / "warm"
    warm_args = [a if a != str(out) else str(warm) for a in args] + ["--init-from", str(exported)]
    same = runner.invoke(app, [*warm_args, "--steps", "6"])  # nothing to train: final/ is what it started from
    assert same.exit_code == 0, same.output
    for name in ("generator.safetensors", "discriminator.safetensors", "matcher.safetensors"):
        assert (warm / "final" / name).read_bytes() == (exported / name).read_bytes()
    more = runner.invoke(app, [*warm_args, "--steps", "8"])
    assert more.exit_code == 0, more.output
    assert json.loads(more.stdout.strip().splitlines()[-1])["steps"] == 8
    wider = runner.invoke(app, [*[a if a != str(out) else str(tmp_path / "wider") for a in args], "--g-width", "8",
                                "--init-from", str(exported), "--steps", "8"])
    assert wider.exit_code == 2 and "g_width (4 vs 8)" in wider.output
    # shapes captions: consistency under the shapes classifier's scorer at every evaluation (--matcher is on too)
    assert all(0 <= r["consistency_mean"] <= 1 and "matcher_loss" in r for r in rows)
    assert json.loads((out / "final" / "config.json").read_text())["domain"] == "shapes"
    assert GanModel.load(str(tmp_path / "exported")).identity == GanModel.load(str(out)).identity
    # a float16 export: half the weight bytes, the same images but for the rounding, the same matcher scores nearly
    export_checkpoint(str(out), str(tmp_path / "half"), half=True)
    for name in ("generator.safetensors", "discriminator.safetensors", "matcher.safetensors"):
        full_size, half_size = (exported / name).stat().st_size, (tmp_path / "half" / name).stat().st_size
        assert half_size < 0.6 * full_size, (name, half_size, full_size)
    full_gan, half_gan = GanModel.load(str(exported)), GanModel.load(str(tmp_path / "half"))
    cond = torch.randn(4, full_gan.config.text_dim)
    a, b = (g.generate(cond, g.noise(list(range(4)))) for g in (full_gan, half_gan))
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.mean() < 1.0 and half_gan.identity != full_gan.identity
    from llmgan.gan.matcher import Matcher

    m_full, m_half = Matcher.load(str(exported)), Matcher.load(str(tmp_path / "half"))
    assert next(m_half.net.parameters()).dtype == torch.float32
    assert {k: v.shape for k, v in m_half.net.state_dict().items()} == {
        k: v.shape for k, v in m_full.net.state_dict().items()}

    changed = runner.invoke(app, [*args, "--image-size", "64", "--steps", "6"])
    assert changed.exit_code == 2 and "different configuration" in changed.output

    sample_out = tmp_path / "samples"
    prompt = "a small red star in the top left corner on a navy background"
    res = runner.invoke(app, ["sample", prompt, "-n", "3", "--out", str(sample_out), "--ckpt", str(out), "--best-of", "2"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in sample_out.iterdir()) == ["000.png", "001.png", "002.png", "grid.png"]
    assert np.asarray(Image.open(sample_out / "000.png")).shape == (32, 32, 3)
    again = tmp_path / "again"
    res = runner.invoke(app, ["sample", prompt, "-n", "3", "--out", str(again), "--ckpt", str(out), "--best-of", "2"])
    assert res.exit_code == 0
    for name in ("000.png", "002.png"):
        assert (again / name).read_bytes() == (sample_out / name).read_bytes()


def test_train_without_local_and_bad_sample_input_are_one_line_errors(tiny_data: str, tmp_path: Path) -> None:
    runner = CliRunner()
    # without --local training is distributed (tests/test_train_distributed.py); bad options fail before Ray starts
    res = runner.invoke(app, ["train", "--data", tiny_data, "--out", str(tmp_path / "r"), "--steps", "2", "--epochs", "1"])
    assert res.exit_code == 2 and "epochs" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["sample", "red star", "-n", "2", "--out", str(tmp_path / "s"), "--ckpt", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "no GAN checkpoint" in res.output
    res = runner.invoke(app, ["sample", "red star", "-n", "2", "--out", str(tmp_path / "s"), "--truncation", "0"])
    assert res.exit_code == 2 and "truncation" in res.output


def test_train_and_sample_with_s3_run_directory(tiny_data: str, s3_url: str, s3_server: str, tmp_path: Path) -> None:
    runner = CliRunner()
    out = s3_url + "/run"
    res = runner.invoke(app, ["train", "--local", "--data", tiny_data, "--out", out, "--steps", "2", "--batch-size", "4",
                              "--g-width", "4", "--d-width", "4", "--threads", "1", "--no-eval", "--no-matcher",
                              "--checkpoint-every", "2", "--s3-endpoint", s3_server])
    assert res.exit_code == 0, res.output
    names = Storage(s3_server).list(out)
    assert not any("matcher" in n for n in names)
    assert {"final/config.json", "final/generator.safetensors", "checkpoints/00000002/training_state.pt",
            "metrics.jsonl", "samples/00000002.png"} <= set(names)
    res = runner.invoke(app, ["sample", "a red circle", "-n", "2", "--out", str(tmp_path / "s"), "--ckpt", out,
                              "--s3-endpoint", s3_server])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "s" / "grid.png").exists()


def test_training_loop_extension_points_component_and_evaluator(tiny_data: str, tmp_path: Path) -> None:
    """A component trained alongside G and D (its metrics in the rows, saved into each checkpoint, loaded on
    resume) and an injected evaluator whose figures land in the rows at --eval-every steps and in metrics.png."""
    from llmgan.gan.train_options import LocalTrainOptions
    from llmgan.gan.train_report import Panel
    from llmgan.gan.trainer import train_local

    class Counter:
        def __init__(self) -> None:
            self.steps, self.loaded_from = 0, None

        def step(self, images: torch.Tensor, emb: torch.Tensor, step: int, rows: np.ndarray,
                 pool: torch.Tensor | None) -> dict[str, float]:
            assert images.shape[0] == emb.shape[0] == len(rows) == 4 and images.dtype == torch.float32
            assert pool is None  # the GAN draws no contrastive pool in this run
            self.steps += 1
            return {"counter": float(self.steps)}

        def save(self, url: str, storage: Storage, training_state: bool) -> None:
            storage.write_text(f"{url}/counter.json", json.dumps({"steps": self.steps}))

        def load(self, url: str, storage: Storage) -> None:
            self.steps = self.loaded_from = json.loads(storage.read_text(f"{url}/counter.json"))["steps"]

    class Brightness:
        attributes: tuple[str, ...] = ()
        panels = (Panel("mean brightness", keys=("brightness",), y_range=(0.0, 1.0)),)

        def evaluate(self, images: np.ndarray, captions: list[str], labels: dict[str, list[str]],
                     emb: np.ndarray) -> dict[str, float]:
            assert images.dtype == np.uint8 and len(images) == len(captions) == len(emb) == 24 and labels == {}
            return {"brightness": round(float(images.mean()) / 255, 4)}

    out = tmp_path / "run"
    config = GanConfig(batch_size=4, g_width=4, d_width=4)
    opts = dict(seed=1, checkpoint_every=2, sample_every=4, eval_every=3, log_every=50, threads=1, progress=False,
                matcher=False)
    first = Counter()
    train_local(tiny_data, str(out), config, LocalTrainOptions(steps=4, **opts), evaluators=[Brightness()],
                components=[first])
    assert first.steps == 4 and json.loads((out / "checkpoints" / "00000004" / "counter.json").read_text()) == {
        "steps": 4}
    again = Counter()
    train_local(tiny_data, str(out), config, LocalTrainOptions(steps=6, **opts), evaluators=[Brightness()],
                components=[again])
    assert again.loaded_from == 4 and again.steps == 6
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["counter"], "brightness" in r) for r in rows] == [
        (2, 1.5, False), (3, 3.0, True), (4, 4.0, True), (6, 5.5, True)]  # rows: checkpoints, evals, run ends
    assert (out / "final" / "counter.json").exists() and (out / "metrics.png").exists()
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["00000004.png", "00000006.png", "captions.txt"]


def test_matcher_trained_alongside_resumes_exactly_and_final_holds_it_calibrated(tiny_data: str, tmp_path: Path) -> None:
    """--matcher: the matcher steps with G and D, is saved into every checkpoint (with its optimiser state) and
    final/, resumes exactly (4 + 2 steps == 6 steps, weights bit for bit), its loss is in the rows, the live
    matcher scores consistency at evaluation steps (no shapes scorer given), metrics.png gets both panels, and
    load_scorer("matcher", run) picks final/'s calibrated matcher ("auto" prefers the classifier for shapes)."""
    from safetensors.numpy import load_file

    from llmgan.eval.consistency import MatcherScorer, load_scorer
    from llmgan.gan.matcher_component import MatcherComponent
    from llmgan.gan.train_options import LocalTrainOptions
    from llmgan.gan.trainer import train_local

    config = GanConfig(batch_size=4, g_width=4, d_width=4)
    opts = dict(seed=2, checkpoint_every=2, sample_every=6, eval_every=3, log_every=50, threads=1, progress=False)
    straight, split = tmp_path / "straight", tmp_path / "split"
    train_local(tiny_data, str(straight), config, LocalTrainOptions(steps=6, **opts))
    train_local(tiny_data, str(split), config, LocalTrainOptions(steps=4, **opts))
    assert {"matcher.json", "matcher.safetensors", "matcher_state.pt"} <= {
        p.name for p in (split / "checkpoints" / "00000004").iterdir()}
    summary = train_local(tiny_data, str(split), config, LocalTrainOptions(steps=6, **opts))
    assert summary["start_step"] == 4 and set(summary["consistency"]) == {"mean", "below_0.5"}
    a, b = load_file(str(straight / "final" / "matcher.safetensors")), load_file(str(split / "final" / "matcher.safetensors"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    with torch.random.fork_rng():  # the weights it started from (same init seed): training changed them
        start = MatcherComponent(config.replace(text_dim=384), np.zeros((24, 32, 32, 3), np.uint8),
                                 np.zeros((24, 384), np.float32), seed=2).state.net.state_dict()
    assert all(k in a for k in start) and any(not np.array_equal(a[k], v.numpy()) for k, v in start.items())
    assert not (straight / "final" / "matcher_state.pt").exists()  # inference copy: no optimiser state

    rows = [json.loads(line) for line in (split / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 3, 4, 6]
    assert all(np.isfinite(r["matcher_loss"]) for r in rows)
    evaluated = [r["step"] for r in rows if "consistency_mean" in r]
    assert evaluated == [3, 4, 6]  # --eval-every 3 and the end of each invocation
    assert all(0 <= r["consistency_mean"] <= 1 and 0 <= r["consistency_below_0.5"] <= 1 for r in rows
               if "consistency_mean" in r)
    # losses, matcher loss, consistency: three stacked panels
    assert Image.open(split / "metrics.png").size[1] == 24 + 3 * (166 + 40)

    meta = json.loads((split / "final" / "config.json").read_text())
    assert meta["domain"] == "shapes" and meta["step"] == 6
    saved = json.loads((split / "final" / "matcher.json").read_text())
    assert saved["info"]["trained_with_gan"] and saved["info"]["steps"] == 6 and saved["info"]["n_heldout"] == 4
    assert (saved["calibration"]["a"], saved["calibration"]["b"]) != (10.0, -5.0)  # fitted, not the default
    assert load_scorer("auto", str(split)).name == "shapes-classifier"  # shapes captions: the better judge
    scorer = load_scorer("matcher", str(split))
    assert isinstance(scorer, MatcherScorer)
    assert scorer.matcher.calibration == (saved["calibration"]["a"], saved["calibration"]["b"])


def test_training_domain_and_matcher_holdout() -> None:
    from llmgan.domains import detect_domain
    from llmgan.gan.matcher_component import heldout_rows, row_keys

    shapes = ["a small red star in the top left corner on a navy background", "a large blue circle at the centre"]
    assert detect_domain(shapes * 50).name == "shapes"
    assert detect_domain(["a cat on a sofa", "two dogs in the snow"] * 50).name == "captioned"
    # the 90 % bar: 90 of 100 captions with a shape and a colour pass, 88 do not
    assert detect_domain(shapes * 45 + ["a cat on a sofa"] * 10).name == "shapes"
    assert detect_domain(shapes * 44 + ["a cat on a sofa"] * 12).name == "captioned"
    rows = heldout_rows(1000, seed=3)
    assert len(rows) == 50 and np.array_equal(rows, heldout_rows(1000, seed=3)) and len(set(rows)) == 50
    assert len(heldout_rows(24, seed=3)) == 4 and len(heldout_rows(100_000, seed=3)) == 512
    assert row_keys(["a", "b"], {"shape": ["star", "star"], "color": ["red", "blue"]}) == [
        ("red", "star"), ("blue", "star")]
    assert row_keys(["a", "b"], {}) == ["a", "b"]


TWO_RANKS = """
import sys
import numpy as np, torch, torch.distributed as dist, torch.multiprocessing as mp
from llmgan.gan.config import GanConfig
from llmgan.gan.matcher_component import MatcherComponent
from llmgan.io.images import to_float

def run(rank, store):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method="file://" + store, rank=rank, world_size=2)
    rng = np.random.default_rng(rank)  # each rank has other rows
    images = rng.integers(0, 255, (40, 32, 32, 3), dtype=np.uint8)
    emb = rng.standard_normal((40, 16)).astype(np.float32)
    c = MatcherComponent(GanConfig(text_dim=16, batch_size=8), images, emb, seed=5, rank=rank, world=2)
    held = np.flatnonzero(c.held)
    for step in range(3):
        # at step 1 rank 0's batch is held-out rows only: it learns nothing but still joins the average
        rows = held[:4] if (rank == 0 and step == 1) else np.arange(step * 4, step * 4 + 4) + 10
        m = c.step(to_float(images[rows]), torch.from_numpy(emb[rows]), step, rows, None)
        assert np.isnan(m["matcher_loss"]) == (rank == 0 and step == 1), (rank, step, m)
    flat = torch.cat([p.detach().reshape(-1) for p in c.state.net.parameters()])
    both = [torch.zeros_like(flat) for _ in range(2)]
    dist.all_gather(both, flat)
    if rank == 0:
        print("max_diff", float((both[0] - both[1]).abs().max()), "steps", c.state.step)
    dist.destroy_process_group()

if __name__ == "__main__":
    mp.start_processes(run, args=(sys.argv[1],), nprocs=2, start_method="fork")
"""


def test_matcher_copies_stay_identical_across_ranks(tmp_path: Path) -> None:
    """Two ranks (gloo) training the matcher on different rows, one step with a rank whose batch is all held-out
    rows: the averaged gradients keep both copies bit for bit equal."""
    import subprocess
    import sys

    script = tmp_path / "two_ranks.py"
    script.write_text(TWO_RANKS)
    res = subprocess.run([sys.executable, str(script), str(tmp_path / "store")], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("max_diff"))
    assert line == "max_diff 0.0 steps 3", line
