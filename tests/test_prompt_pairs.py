"""`llmgan data prompt-pairs --from`: (short prompt -> caption) pairs from any captioned Parquet, for `train-lm`."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from llmgan.cli.app import app
from llmgan.data.prompt_pairs import NAME_FORMS, STYLE_FORMS, prompt_pairs_from, read_captioned
from llmgan.errors import UserError

runner = CliRunner()

GENERIC = [
    "a mossy stone tile, top view, soft light",
    "a cracked red brick wall with white mortar",
    "wooden crate; iron bands at the corners",
    "glowing blue crystal shard on dark ground",
]
EMOJI = [  # (name, subcategory, style, split)
    ("doughnut", "food-sweet", "google", "train"),
    ("doughnut", "food-sweet", "twitter", "heldout"),
    ("envelope", "mail", "google", "train"),
    ("envelope", "mail", "twitter", "train"),
    ("man facepalming", "person-gesture", "twitter", "train"),
    ("owl", "animal-bird", "google", "heldout"),
    ("owl", "animal-bird", "twitter", "train"),
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def generic_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("generic") / "captions.parquet"
    pq.write_table(pa.table({"image": [b"\x89PNG"] * len(GENERIC), "caption": GENERIC}), path)
    return str(path)


@pytest.fixture(scope="module")
def emoji_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("emoji") / "emoji.parquet"
    cols: dict[str, list[str]] = {k: [] for k in ("image", "caption", "short_prompt", "label", "name", "subcategory",
                                                  "style", "split")}
    for i, (name, sub, style, split) in enumerate(EMOJI):
        for key, value in (("caption", f"{name} emoji, {sub.replace('-', ' ')}, {style} style"),
                           ("short_prompt", name if i % 2 else f"{name}, {style} style"),
                           ("label", name.replace(" ", "_")), ("name", name), ("subcategory", sub), ("style", style),
                           ("split", split)):
            cols[key].append(value)
    cols["image"] = [b"\x89PNG"] * len(EMOJI)
    pq.write_table(pa.table({k: pa.array(v, pa.binary() if k == "image" else pa.string()) for k, v in cols.items()}),
                   path)
    return str(path)


def _pairs(args: list[str], out: Path) -> pa.Table:
    result = runner.invoke(app, ["data", "prompt-pairs", *args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.strip().splitlines()) == 1 and "prompt pairs from" in result.stdout
    return pq.read_table(out)


def _in_order(prompt: str, caption: str) -> bool:
    """Every word of the prompt appears in the caption, in the same order."""
    rest = caption
    for word in prompt.split():
        m = re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", rest)
        if m is None:
            return False
        rest = rest[m.end():]
    return True


def test_generic_captions_give_first_clauses_and_content_words(generic_file: str, tmp_path: Path) -> None:
    table = _pairs(["--from", generic_file, "--n", "80", "--seed", "3"], tmp_path / "p.parquet")
    assert table.column_names == ["short_prompt", "caption"] and table.num_rows == 80
    rows = table.to_pylist()
    assert {r["caption"] for r in rows} == set(GENERIC)  # every row is used (rows in turn)
    for r in rows:
        assert r["short_prompt"] and _in_order(r["short_prompt"], r["caption"]), r
    prompts = {r["short_prompt"] for r in rows}
    assert "a mossy stone tile" in prompts and "wooden crate" in prompts  # first clauses
    assert any(p not in {c.split(",")[0].split(";")[0] for c in GENERIC} for p in prompts)  # content-word subsets
    # deterministic by seed: the same seed gives the same table, another seed another one
    assert _pairs(["--from", generic_file, "--n", "80", "--seed", "3"], tmp_path / "q.parquet").equals(table)
    assert not _pairs(["--from", generic_file, "--n", "80", "--seed", "4"], tmp_path / "r.parquet").equals(table)


def test_emoji_prompts_come_from_name_and_style_and_train_excludes_heldout(emoji_file: str, tmp_path: Path) -> None:
    table = _pairs(["--from", emoji_file, "--n", "300", "--split", "train", "--seed", "0"], tmp_path / "p.parquet")
    assert table.column_names == ["short_prompt", "caption", "name", "style", "label", "split"]
    rows = table.to_pylist()
    train = {f"{n} emoji, {s.replace('-', ' ')}, {st} style" for n, s, st, sp in EMOJI if sp == "train"}
    assert {r["caption"] for r in rows} == train and {r["split"] for r in rows} == {"train"}
    assert "doughnut emoji, food sweet, twitter style" not in {r["caption"] for r in rows}  # held-out pair
    forms = set()
    for r in rows:
        name, style, prompt = r["name"], r["style"], r["short_prompt"]
        article = "an" if name[0] in "aeiou" else "a"
        allowed = {f.format(name=name, style=style, article=article) for f in (*NAME_FORMS, *STYLE_FORMS)}
        assert prompt in allowed, prompt  # the name intact, the row's own style only
        forms.add(re.sub(r"^an? ", "A ", prompt.replace(name, "N").replace(style, "S")))
    assert len(forms) == len(NAME_FORMS) + len(STYLE_FORMS)  # every form is drawn
    assert any(r["short_prompt"] == "an owl" for r in rows) and any(r["short_prompt"] == "a doughnut" for r in rows)

    held = prompt_pairs_from(read_captioned(emoji_file), 20, seed=0, split="heldout")
    assert set(held.column("split").to_pylist()) == {"heldout"}
    assert set(held.column("caption").to_pylist()) == {"doughnut emoji, food sweet, twitter style",
                                                       "owl emoji, animal bird, google style"}
    assert prompt_pairs_from(read_captioned(emoji_file), 50, seed=1).num_rows == 50  # default split: all rows


def test_bad_sources_are_one_line_errors(generic_file: str, tmp_path: Path) -> None:
    no_caption = tmp_path / "nocap.parquet"
    pq.write_table(pa.table({"image": [b"x"], "label": ["a"]}), no_caption)
    not_parquet = tmp_path / "x.parquet"
    not_parquet.write_text("hello")
    out = str(tmp_path / "o.parquet")
    cases = [
        (["--from", str(no_caption)], "no caption column (caption or text); has image, label"),
        (["--from", generic_file, "--split", "train"], "has no split column"),
        (["--from", str(tmp_path / "missing.parquet")], "no such file"),
        (["--from", str(tmp_path)], "a directory"),
        (["--from", str(not_parquet)], "not a readable Parquet file"),
        (["--from", generic_file, "--detail", "0.5"], "--detail: applies to shapes pairs only"),
        (["--from", generic_file, "--split", "test"], "--split must be one of"),
        (["--from", generic_file, "--n", "0"], "--n must be at least 1"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["data", "prompt-pairs", "--n", "5", *args, "--out", out])
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("error: ") and message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    assert not Path(out).exists()
    with pytest.raises(UserError, match="no captioned rows in split 'heldout'"):
        prompt_pairs_from(pa.table({"caption": ["a"], "split": ["train"]}), 3, split="heldout")
    # a `text` column (Hugging Face) is a caption column too
    hf = tmp_path / "hf.parquet"
    pq.write_table(pa.table({"text": ["a red kite, high up"]}), hf)
    assert read_captioned(str(hf)).column_names == ["caption"]


def test_shapes_pairs_without_from_are_unchanged(tmp_path: Path) -> None:
    from llmgan.domains.shapes.render import generate_prompt_pairs

    out = tmp_path / "s.parquet"
    result = runner.invoke(app, ["data", "prompt-pairs", "--n", "20", "--seed", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).equals(generate_prompt_pairs(20, seed=2))


def test_tiny_caption_lm_on_emoji_pairs(emoji_file: str, tmp_path: Path) -> None:
    """Pairs -> train-lm (untied embeddings, as the emoji captioner) -> an expander with the captioned domain's check
    (the emoji dataset's words)."""
    import json

    from llmgan.domains.generic import CaptionedDomain, caption_words
    from llmgan.text.expander import CaptionExpander, ExpanderConfig

    pairs = _pairs(["--from", emoji_file, "--n", "64", "--split", "train"], tmp_path / "p.parquet")
    out = tmp_path / "lm"
    result = runner.invoke(app, ["train-lm", "--data", str(tmp_path / "p.parquet"), "--out", str(out), "--steps", "4",
                                 "--batch-size", "8", "--n-layer", "1", "--n-embd", "32", "--n-head", "2",
                                 "--vocab-size", "300", "--no-tie-embeddings"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] is False
    assert json.loads((out / "train_lm.json").read_text())["config"]["tie_embeddings"] is False
    domain = CaptionedDomain(caption_words(pairs.column("caption").to_pylist()))
    expander = CaptionExpander(ExpanderConfig(lm=str(out), max_new_tokens=8, max_resamples=1),
                               check=domain.faithfulness())
    got = expander.expand(["owl, twitter style", "dragon"], ["a", "b"], variants=2, seed=0)
    assert [len(c) for c in got.captions] == [2, 2]
    assert got.stats["not_understood"] == 2  # "dragon" is no caption word: never called faithful
    # a 4-step LM rarely keeps both words: whatever it wrote, the owl prompt's captions name owl and twitter
    assert all("owl" in c and "twitter" in c for c in got.captions[0])
    model = expander.model
    assert model.get_input_embeddings().weight.data_ptr() != model.get_output_embeddings().weight.data_ptr()


def test_benchmark_figures_of_emoji_captions(emoji_file: str) -> None:
    """benchmarks.expand --captioned: its prompt sets (held-out rows stating their style, train rows as drawn) and how
    it scores captions."""
    from benchmarks.expand import caption_figures, captioned_prompt_sets

    rows = pq.read_table(emoji_file).to_pylist()
    sets = captioned_prompt_sets(rows, n_train=3, seed=0)
    assert [it["prompt"] for it in sets["held-out name, style"]] == ["doughnut, twitter style", "owl, google style"]
    assert all(it["style"] in it["prompt"] and it["name"] in it["prompt"] for it in sets["held-out other forms"])
    assert len(sets["train sample"]) == 3 and all(it["name"] in it["prompt"] for it in sets["train sample"])
    item = {"name": "owl", "style": "google", "sub": "animal bird"}
    caps = ["owl emoji, animal bird, google style", "owl emoji, animal bird, twitter style",
            "owl emoji, food sweet, google style", "brown owl emoji, animal bird, google style", "owl, google style"]
    f = caption_figures([item], [caps], {"animal bird", "food sweet"}, {"google", "twitter"})
    assert f == {"captions": 5, "name_kept": 1.0, "name_exact": 0.6, "style_prompts": 5, "style_kept": 0.6,
                 "well_formed": 0.8, "subcategory_right": 0.6}
    unstated = caption_figures([{**item, "style": None}], [caps[:1]], {"animal bird"}, {"google"})
    assert unstated["style_prompts"] == 0 and unstated["well_formed"] == 1.0
