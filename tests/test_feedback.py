"""Consistency feedback in the generation job (local executor, real GAN and classifier): every image scored,
low scorers redrawn with derived seeds, the best draw kept; figures per image, per shard and per job; the same
bytes on a rerun and after a resume."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmgan.job.config import GenerateConfig
from llmgan.job.feedback import Feedback, merge_consistency, redraw_seed, shard_consistency

PROMPTS = ["red star", "a small blue circle", "green square on a gray background", "crimson cross", "white triangle"]


def _job(tmp_path: Path, ckpt: str, out: str, **kw) -> dict:  # type: ignore[no-untyped-def]
    from llmgan.job.local_executor import LocalExecutor
    from llmgan.job.run import run_job

    prompts = tmp_path / "prompts.parquet"
    if not prompts.exists():
        pq.write_table(pa.table({"prompt": PROMPTS * 2}), prompts)
    cfg = GenerateConfig(prompts=str(prompts), out=str(tmp_path / out), ckpt=ckpt, expand=False, n_per_prompt=2,
                         shard_size=8, batch_size=8, executor="local", **kw)
    return run_job(cfg, LocalExecutor(), progress=False)


def _members(path: Path) -> dict[str, bytes]:
    out = {}
    for tar_path in sorted(path.glob("shards/*.tar")):
        with tarfile.open(tar_path) as tar:
            out.update({m.name: tar.extractfile(m).read() for m in tar})  # type: ignore[union-attr]
    return out


def test_feedback_redraws_low_scores_keeps_the_best_and_reports_it(tmp_path: Path, tiny_ckpt: str) -> None:
    # A random GAN against the shapes classifier: most first draws score low, so redraws happen.
    summary = _job(tmp_path, tiny_ckpt, "a", consistency="classifier", min_consistency=0.5, max_attempts=3)
    members = _members(tmp_path / "a")
    metas = [json.loads(v) for k, v in sorted(members.items()) if k.endswith(".json")]
    assert len(metas) == summary["images"] == 20
    for m in metas:
        assert 0 <= m["first_consistency"] <= m["consistency"] <= 1  # the kept draw is never worse
        assert 1 <= m["attempts"] <= 3
        if m["consistency"] < 0.5:
            assert m["attempts"] == 3  # still low: every allowed draw was spent
        if m["consistency"] > m["first_consistency"]:  # a redraw was kept: its seed is a derived one
            assert m["seed"] in {redraw_seed(_first_seed(m), k) for k in (1, 2)}
        assert isinstance(m["disagree"], list) and set(m["disagree"]) <= {"shape", "color", "size", "position",
                                                                          "background"}
    redrawn = [m for m in metas if m["attempts"] > 1]
    assert redrawn, "a random GAN should need redraws"
    cons = summary["consistency"]
    assert cons["scorer"] == "shapes-classifier" and cons["scored"] == 20 == sum(cons["histogram"])
    assert cons["redrawn"] == len(redrawn) and cons["draws"] == sum(m["attempts"] for m in metas)
    assert cons["below_threshold"] == sum(m["consistency"] < 0.5 for m in metas)
    assert cons["below_threshold_first_draw"] == sum(m["first_consistency"] < 0.5 for m in metas)
    assert cons["below_threshold"] <= cons["below_threshold_first_draw"]
    assert cons["mean"] == pytest.approx(np.mean([m["consistency"] for m in metas]), abs=1e-3)
    index = pq.read_table(tmp_path / "a" / "index" / "00000.parquet").to_pylist()
    first = {json.loads(members[f"{r['key']}.json"])["consistency"] for r in index}
    assert {round(r["consistency"], 4) for r in index} == {round(c, 4) for c in first}
    assert all(r["attempts"] >= 1 for r in index)
    stats = json.loads((tmp_path / "a" / "shards" / "00000.stats.json").read_text())
    assert stats["consistency"]["scored"] == stats["images"] and "consistency" in stats["seconds"]

    # Determinism: a second job and a resumed one write the same bytes.
    _job(tmp_path, tiny_ckpt, "b", consistency="classifier", min_consistency=0.5, max_attempts=3)
    assert _members(tmp_path / "b") == members
    (tmp_path / "a" / "shards" / "00001.stats.json").unlink()
    again = _job(tmp_path, tiny_ckpt, "a", consistency="classifier", min_consistency=0.5, max_attempts=3)
    assert again["images_this_run"] == 8 and _members(tmp_path / "a") == members
    assert again["consistency"] == summary["consistency"]

    # Score only: the same first draws, nothing redrawn, the same first scores.
    scored = _job(tmp_path, tiny_ckpt, "c", consistency="classifier", min_consistency=0.0)
    c_metas = [json.loads(v) for k, v in sorted(_members(tmp_path / "c").items()) if k.endswith(".json")]
    assert scored["consistency"]["redrawn"] == 0 and all(m["attempts"] == 1 for m in c_metas)
    assert [m["first_consistency"] for m in c_metas] == [m["first_consistency"] for m in metas]


def _first_seed(meta: dict) -> int:
    from llmgan.job.plan import image_seed, prompt_seed

    return image_seed(prompt_seed(0, meta["prompt_id"], None), meta["variant"], meta["index"])


def test_no_scorer_means_no_feedback_fields(tmp_path: Path, tiny_ckpt: str) -> None:
    summary = _job(tmp_path, tiny_ckpt, "n", consistency="none")
    assert summary["consistency"] is None
    metas = [json.loads(v) for k, v in _members(tmp_path / "n").items() if k.endswith(".json")]
    assert metas and all("consistency" not in m for m in metas)


def test_a_bad_matcher_folder_fails_before_anything_is_written(tmp_path: Path, tiny_ckpt: str) -> None:
    from llmgan.errors import UserError

    with pytest.raises(UserError, match="--consistency"):
        _job(tmp_path, tiny_ckpt, "x", consistency=str(tmp_path / "no-such-matcher"))
    assert not (tmp_path / "x").exists()


class _Scripted:
    """A scorer whose score is the image's mean pixel value / 255 (so the test knows which draw is best)."""

    name = "scripted"

    def score(self, images, captions, prompts, emb=None):  # type: ignore[no-untyped-def]
        from llmgan.eval.consistency import Consistency

        return [Consistency(float(im.mean()) / 255.0, ()) for im in images]


def test_feedback_keeps_the_best_of_all_draws() -> None:
    def draw(emb, seeds):  # type: ignore[no-untyped-def]
        vals = [seed % 256 for seed in seeds]
        return np.stack([np.full((2, 2, 3), v, np.uint8) for v in vals]), np.zeros(len(seeds), np.float32)

    seeds = [10, 250, 20]
    images, scores = draw(None, seeds)
    out = Feedback(_Scripted(), threshold=0.9, max_attempts=4)(draw, np.zeros((3, 4)), seeds, ["c"] * 3, ["p"] * 3,
                                                                images, scores)
    for i, seed in enumerate(seeds):
        candidates = [seed] + [redraw_seed(seed, k) for k in (1, 2, 3)]
        if seed % 256 / 255 >= 0.9:
            assert out.attempts[i] == 1 and out.seeds[i] == seed
            continue
        tried = [candidates[0]]
        for c in candidates[1:]:  # redraws stop once one passes
            tried.append(c)
            if c % 256 / 255 >= 0.9:
                break
        best = max(tried, key=lambda c: (c % 256, -tried.index(c)))
        assert out.attempts[i] == len(tried) and out.seeds[i] == best
        assert out.images[i].mean() == best % 256 and out.first_scores[i] == pytest.approx(seed % 256 / 255)


def test_merged_figures_weight_every_image() -> None:
    a = shard_consistency([{"consistency": 0.9, "first_consistency": 0.2, "attempts": 2}], "s", 0.5, 4)
    b = shard_consistency([{"consistency": 0.35, "first_consistency": 0.35, "attempts": 4},
                           {"consistency": 1.0, "first_consistency": 1.0, "attempts": 1}], "s", 0.5, 4)
    total = merge_consistency([a, None, b])  # type: ignore[list-item]
    assert total is not None and total["scored"] == 3 and total["draws"] == 7
    assert total["mean"] == pytest.approx((0.9 + 0.35 + 1.0) / 3, abs=1e-4)
    assert total["share_below_threshold"] == pytest.approx(1 / 3, abs=1e-4)
    assert total["share_below_threshold_first_draw"] == pytest.approx(2 / 3, abs=1e-4)
    assert total["histogram"][9] == 2 and total["histogram"][3] == 1 and total["extra_draws_per_image"] == pytest.approx(4 / 3, abs=1e-4)
    assert merge_consistency([None, None]) is None  # type: ignore[list-item]


def test_png_of_kept_draw_matches_its_index_sha(tmp_path: Path, tiny_ckpt: str) -> None:
    import hashlib

    _job(tmp_path, tiny_ckpt, "s", consistency="classifier", max_attempts=2)
    members = _members(tmp_path / "s")
    for r in pq.read_table(tmp_path / "s" / "index" / "00000.parquet").to_pylist():
        png = members[f"{r['key']}.png"]
        assert hashlib.sha256(png).hexdigest() == r["sha256"]
        from PIL import Image

        assert Image.open(io.BytesIO(png)).size == (32, 32)


def test_redraws_are_conditioned_on_the_recaptioned_text() -> None:
    """With a domain recaption, redraws use its embedding and the kept draw records the text it came from."""
    seen: list[np.ndarray] = []

    def draw(emb, seeds):  # type: ignore[no-untyped-def]
        seen.append(np.asarray(emb).copy())
        bright = np.asarray(emb)[:, 0] > 0  # the recaptioned embedding draws a passing (bright) image
        return np.stack([np.full((2, 2, 3), 255 if b else 0, np.uint8) for b in bright]), np.zeros(len(seeds))

    emb = np.zeros((2, 3), np.float32)
    images, scores = draw(emb, [1, 2])
    calls: list[list[str]] = []

    def embed(texts):  # type: ignore[no-untyped-def]
        calls.append(list(texts))
        return np.ones((len(texts), 3), np.float32)

    fb = Feedback(_Scripted(), threshold=0.5, max_attempts=3,
                  recaption=lambda caption, prompt: None if caption == "keep" else f"plain {prompt}", embed=embed)
    out = fb(draw, emb, [1, 2], ["wordy caption", "keep"], ["red star", "blue disc"], images, scores)
    assert calls == [["plain red star"]]  # embedded once, for the item that has a recaption
    assert out.drawn_from == ["plain red star", None] and out.attempts == [2, 3]
    assert out.verdicts[0].score == 1.0 and out.verdicts[1].score == 0.0
    assert (seen[1][0] == 1).all() and (seen[1][1] == 0).all()  # item 1 redrawn from its own caption embedding


def test_canonical_caption_keeps_the_prompts_values_in_the_corpus_form() -> None:
    from llmgan.domains.shapes.captions import canonical_caption

    assert canonical_caption("a lavender purple triangle of big size in the bottom right, on a black background",
                             "big lavender triangle") == "a large purple triangle in the bottom right on a black background"
    assert canonical_caption("a small blue star on a navy backdrop", "red star") == "a small red star on a navy background"
    assert canonical_caption("the digit seven, thin strokes", "seven") is None
