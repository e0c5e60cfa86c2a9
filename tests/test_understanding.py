"""The user's words as the contract: grounding of words outside the domain's tables, contradictions caught before
the GAN draws, words not understood recorded per image and counted through to _SUCCESS.json, never certified,
`--on-unsupported reject`, and byte-identical reruns (local executor; Ray vs local is in test_generate)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from llmgan.cli.app import app
from llmgan.domains import detect_domain, domain_of, get_domain
from llmgan.domains.shapes.captions import ShapesFaithfulness
from llmgan.job.config import GenerateConfig
from llmgan.job.local_executor import LocalExecutor
from llmgan.job.run import run_job

runner = CliRunner()
SHAPES = get_domain("shapes")


def _values(text: str) -> dict[str, list[str]]:
    return SHAPES.ground(text).values()


@pytest.mark.parametrize("prompt, expected", [
    ("a sapphire square", {"color": ["blue"], "shape": ["square"]}),  # a gem
    ("a cherry-red star", {"color": ["red"], "shape": ["star"]}),  # a compound
    ("please draw a lemon-colored box icon", {"color": ["yellow"], "shape": ["square"]}),  # food + "colored", extras
    ("sprite: RED STAR", {"color": ["red"], "shape": ["star"]}),  # casing, a prefix
    ("star, red, small", {"shape": ["star"], "color": ["red"], "size": ["small"]}),  # word order
    ("a sqaure in yelow", {"shape": ["square"], "color": ["yellow"]}),  # one-letter typos
    ("an enormous plus on a silver backdrop", {"size": ["large"], "shape": ["cross"], "background": ["gray"]}),
    ("a tiny dot on black", {"size": ["small"], "shape": ["circle"], "background": ["black"]}),
])
def test_words_outside_the_tables_are_grounded(prompt: str, expected: dict[str, list[str]]) -> None:
    got = SHAPES.ground(prompt)
    assert got.values() == expected and got.not_understood == ()
    assert all(0 < g.confidence <= 1 for g in got.understood)
    assert {g.how for g in got.understood} >= ({"typo"} if "sqaure" in prompt else set())


@pytest.mark.parametrize("prompt, missing", [
    ("red dragon", ("dragon",)),
    ("magenta heart", ("magenta", "heart")),  # a colour too far from every drawable one is not guessed
    ("a treasure chest", ("treasure", "chest")),
    ("a strawberry", ("strawberry",)),  # a colour name used as a thing
    ("two red stars", ("two",)),  # counts are not drawn
    ("a red scar", ("scar",)),  # a real word is never "corrected" into a domain word
])
def test_words_the_domain_cannot_draw_are_not_understood(prompt: str, missing: tuple[str, ...]) -> None:
    assert SHAPES.ground(prompt).not_understood == missing


def test_a_contradiction_written_by_the_lm_is_caught_and_fixed() -> None:
    f = ShapesFaithfulness()
    written = "a small turquoise square against a dark green background"  # the LM's draft for "a sapphire square"
    assert not f.check("a sapphire square", written)
    pinned = f.pin("a sapphire square", written)
    assert pinned == "a small sapphire blue square against a dark green background"
    assert f.check("a sapphire square", pinned)
    assert f.not_understood("golden treasure chest") == ["treasure", "chest"]


def test_the_shipped_lm_never_contradicts_a_prompt_word() -> None:
    """Seeded drafts of the shipped LM for prompts whose words it never saw: every caption it returns names the
    prompt's values (or none), never another; a prompt it did not understand is never called faithful."""
    from llmgan.text.expander import CaptionExpander, ExpanderConfig

    for keep in (True, False):
        exp = CaptionExpander(ExpanderConfig(cache_size=0, keep_words=keep), check=SHAPES.faithfulness())
        prompts = ["a sapphire square", "a cherry-red star", "lemon-colored circle", "golden treasure chest"]
        result = exp.expand(prompts, prompts, variants=4, seed=7)
        for prompt, caps in zip(prompts, result.captions):
            asked = SHAPES.ground(prompt).stated()
            for c in caps:
                got = _values(c)
                assert all(got.get(a, [g.value]) == [g.value] for a, g in asked.items()), (prompt, c)
        assert result.stats["not_understood"] == 4 and result.stats["faithful"] + result.stats["resampled"] + \
            result.stats["fallback"] == 12


def _job(tmp_path: Path, ckpt: str, name: str, prompts: list[str], **kw) -> dict:
    path = tmp_path / f"{name}.parquet"
    pq.write_table(pa.table({"id": [f"p{i}" for i in range(len(prompts))], "prompt": prompts}), path)
    cfg = GenerateConfig(prompts=str(path), out=str(tmp_path / name), n_per_prompt=2, variants=2, shard_size=4,
                         batch_size=4, consistency="classifier", executor="local", **kw)
    return run_job(cfg, LocalExecutor(), progress=False)


PROMPTS = ["a sapphire square", "red dragon", "magenta heart", "a cherry-red star", "red dragon"]


def _metas(out: Path) -> list[dict]:
    metas = []
    for tar_path in sorted(out.glob("shards/*.tar")):
        with tarfile.open(tar_path) as tar:
            metas += [json.load(tar.extractfile(m)) for m in tar if m.name.endswith(".json")]  # type: ignore[arg-type]
    return metas


def test_not_understood_words_are_recorded_counted_and_never_certified(tmp_path: Path, tiny_ckpt: str) -> None:
    summary = _job(tmp_path, tiny_ckpt, "flag", PROMPTS, expand=False)
    assert summary["images"] == 10
    u = json.loads((tmp_path / "flag" / "_SUCCESS.json").read_text())["understanding"]
    assert u == {"images_not_understood": 6, "prompts_not_understood": 3,
                 "words": {"dragon": 4, "heart": 2, "magenta": 2}}
    for m in _metas(tmp_path / "flag"):
        if m["not_understood"]:
            assert m["consistency"] is None and 0 <= m["consistency_of_understood"] <= 1
        else:
            assert m["consistency"] is not None and m["understood"]
    sapphire = next(m for m in _metas(tmp_path / "flag") if m["prompt"] == "a sapphire square")
    assert sapphire["understood"]["sapphire"]["value"] == "blue" and sapphire["understood"]["square"]["confidence"] == 1
    cons = summary["consistency"]
    assert cons["unverified"] == 6 and cons["scored"] == 4
    index = pa.concat_tables([pq.read_table(p) for p in sorted((tmp_path / "flag" / "index").glob("*.parquet"))])
    assert sorted(w for row in index.column("not_understood").to_pylist() for w in row) == \
        ["dragon"] * 4 + ["heart"] * 2 + ["magenta"] * 2
    stats = [json.loads(p.read_text()) for p in sorted((tmp_path / "flag" / "shards").glob("*.stats.json"))]
    assert sum(s["understanding"]["images_not_understood"] for s in stats) == 6


def test_on_unsupported_reject_rejects_with_the_words(tmp_path: Path, tiny_ckpt: str) -> None:
    summary = _job(tmp_path, tiny_ckpt, "reject", PROMPTS, expand=False, on_unsupported="reject")
    assert summary["images"] == 4 and summary["rejected_reasons"] == {"not understood": 3}
    assert {tuple(r["words"]) for r in summary["rejected_sample"]} == {("dragon",), ("magenta", "heart")}
    assert summary["understanding"]["images_not_understood"] == 0
    with pytest.raises(Exception, match="--on-unsupported must be one of flag, reject"):
        GenerateConfig(prompts="p.parquet", on_unsupported="drop")


def test_reruns_with_expansion_are_byte_identical(tmp_path: Path, tiny_ckpt: str) -> None:
    _job(tmp_path, tiny_ckpt, "a", PROMPTS)
    _job(tmp_path, tiny_ckpt, "b", PROMPTS)
    for shard in sorted((tmp_path / "a" / "shards").glob("*.tar")):
        assert shard.read_bytes() == (tmp_path / "b" / "shards" / shard.name).read_bytes()


def test_generate_cli_names_what_it_did_not_understand(tmp_path: Path, tiny_ckpt: str) -> None:
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"prompt": PROMPTS}), path)
    result = runner.invoke(app, ["generate", str(path), "--out", str(tmp_path / "o"), "--ckpt", tiny_ckpt,
                                 "--executor", "local", "--no-expand", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "3 prompts asked for things this model did not understand (dragon \u00d72, heart \u00d71, magenta \u00d71)" \
        in result.stdout
    bad = runner.invoke(app, ["generate", str(path), "--out", str(tmp_path / "x"), "--on-unsupported", "skip"])
    assert bad.exit_code == 2 and "--on-unsupported" in bad.output and not (tmp_path / "x").exists()


def test_sample_cli_reports_words_not_understood(tmp_path: Path, tiny_ckpt: str) -> None:
    result = runner.invoke(app, ["sample", "a red dragon", "--out", str(tmp_path / "s"), "--ckpt", tiny_ckpt, "-n", "2"])
    assert result.exit_code == 0, result.output
    assert "not understood by the shapes domain: dragon" in result.stderr


def test_checkpoints_record_their_domain() -> None:
    assert detect_domain(["a small red star in the top left on a navy background"] * 20).name == "shapes"
    assert detect_domain(["a handwritten digit seven (7), upright, written with thin strokes"] * 20).name == "digits"
    mine = detect_domain(["a doughnut emoji", "a red apple emoji", "a doughnut with sprinkles"])
    assert mine.name == "captioned" and "doughnut" in mine.meta()["caption_words"]
    again = domain_of(mine.meta())
    assert again.ground("two doughnuts").values() == {"doughnut": ["doughnut"]}
    assert again.ground("a dragon emoji").not_understood == ("dragon",)
    assert domain_of({"caption_vocabulary": "shapes"}).name == "shapes"  # checkpoints from before domains
