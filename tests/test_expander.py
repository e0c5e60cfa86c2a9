"""The caption expander on the shipped LM and on a random tiny GPT-2: determinism, dedupe, the pluggable
faithfulness check (none / shapes), keep-words, CLI."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from llmgan.cli.app import app
from llmgan.domains.shapes.captions import ShapesFaithfulness, is_faithful
from llmgan.errors import UserError
from llmgan.io.seeds import derive_seed
from llmgan.text.expander import (
    OUTCOMES,
    SHIPPED_LM,
    CaptionExpander,
    ExpanderConfig,
    clean_caption,
    sample_tokens,
)
from llmgan.text.options import keeps_words

WORDS = "short long : a an the small large red blue green star circle square in on at top left right center of".split()
CHAT_TEMPLATE = "{% for m in messages %}<u> {{ m['content'] }}\n{% endfor %}<a>"
UNCHECKED = ["zebra", "hello there", "a quiet lake at dawn", "zebra on a hill", "paper boat", "old key"]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A randomly initialised 2-layer GPT-2 with a word-level tokenizer built here: nothing downloaded."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<eos>", "<unk>", "\n", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split("\n", behavior="isolated"), pre_tokenizers.WhitespaceSplit()]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", unk_token="<unk>", pad_token="<eos>")
    fast.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(vocab), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                                       eos_token_id=0, bos_token_id=0, pad_token_id=0))
    out = tmp_path_factory.mktemp("tiny_lm")
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def shipped() -> CaptionExpander:
    return CaptionExpander(ExpanderConfig(cache_size=0), check=ShapesFaithfulness())


def _outcomes(stats: dict[str, int]) -> int:
    return sum(stats[k] for k in OUTCOMES)


def test_config_validation_names_the_option() -> None:
    for bad, option in [({"top_p": 0.0}, "--top-p"), ({"device": "gpu0"}, "--device"), ({"batch_size": 0}, "--batch-size"),
                        ({"instruction": "no placeholder"}, "--instruction"), ({"temperature": -1.0}, "--temperature"),
                        ({"check": "shape"}, "--check"), ({"keep_words": "yes"}, "--keep-words")]:
        with pytest.raises(UserError, match=f"^{option} ") as err:
            ExpanderConfig(**bad)
        assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="^--check must be one of auto, none"):
        ExpanderConfig(check="shapes")


def test_sampling_respects_top_p_and_uniforms() -> None:
    logits = torch.tensor([[0.0, 6.0, 0.0, 5.5], [0.0, 6.0, 0.0, 5.5]])
    # top_p=0.5 keeps only the most likely token whatever the uniform
    for u in (0.0, 0.5, 0.999):
        assert sample_tokens(logits, torch.tensor([u, u]), 1.0, 0.5).tolist() == [1, 1]
    # with top_p=1 the uniform walks the CDF in vocabulary order
    low, high = sample_tokens(logits, torch.tensor([0.01, 0.999]), 1.0, 1.0).tolist()
    assert low < high
    assert sample_tokens(logits, torch.tensor([0.3, 0.3]), 0.0, 1.0).tolist() == [1, 1]  # greedy


def test_clean_caption_one_line_and_capped() -> None:
    assert clean_caption("  \n a red  star\non black", 300) == "a red star"
    assert clean_caption('"quoted caption"', 300) == "quoted caption"
    capped = clean_caption("word " * 100, 42)
    assert len(capped) <= 42 and not capped.endswith(" ")


def test_batched_left_padded_logits_match_single_rows(tiny_lm: str) -> None:
    exp = CaptionExpander(ExpanderConfig(lm=tiny_lm))
    rows = [exp.format_prompt(p) for p in ["red star", "a large blue circle in the top left", "zebra"]]
    width = max(map(len, rows))
    ids = torch.full((3, width), exp.pad_id)
    mask = torch.zeros_like(ids)
    for r, row in enumerate(rows):
        ids[r, width - len(row):], mask[r, width - len(row):] = torch.tensor(row), 1
    with torch.no_grad():
        batched = exp.model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
        for r, row in enumerate(rows):
            single = exp.model(input_ids=torch.tensor([row])).logits
            assert torch.allclose(batched[r, -1], single[0, -1], atol=1e-5)


def test_random_gpt2_determinism_across_batch_compositions(tiny_lm: str) -> None:
    cfg = ExpanderConfig(lm=tiny_lm, batch_size=4, cache_size=0, max_new_tokens=10)
    exp = CaptionExpander(cfg)
    keys = [f"id{i}" for i in range(len(UNCHECKED))]
    together = exp.expand(UNCHECKED, keys, variants=3, seed=11)
    assert together.stats["unchecked"] == len(UNCHECKED) * 3  # no check passed: nothing is guarded
    alone = [exp.expand([p], [k], variants=3, seed=11).captions[0] for p, k in zip(UNCHECKED, keys)]
    assert together.captions == alone
    mixed = exp.expand(UNCHECKED[::-1] + ["extra prompt"], keys[::-1] + ["x"], variants=3, seed=11)
    assert mixed.captions[:-1] == together.captions[::-1]
    other_seed = exp.expand(UNCHECKED, keys, variants=3, seed=12)
    assert other_seed.captions != together.captions
    for caps in together.captions:
        assert all("\n" not in c and 0 < len(c) <= cfg.max_chars for c in caps)


def test_identical_prompts_and_keys_are_sampled_once(tiny_lm: str) -> None:
    exp = CaptionExpander(ExpanderConfig(lm=tiny_lm, max_new_tokens=6, max_resamples=0))
    result = exp.expand(["zebra"] * 5, ["k"] * 5, variants=2, seed=0)
    assert exp.model_calls == 1
    assert result.stats["generated"] == 2 and result.stats["deduped"] == 8
    assert all(caps == result.captions[0] for caps in result.captions)
    again = exp.expand(["zebra"], ["k"], variants=2, seed=0)  # served by the cache
    assert exp.model_calls == 1 and again.stats["cache_hits"] == 2 and again.captions[0] == result.captions[0]
    exp.expand(["zebra"] * 3, ["a", "b", "c"], variants=2, seed=0)  # distinct keys are distinct samples
    assert exp.model_calls == 2


def test_cache_is_bounded(tiny_lm: str) -> None:
    exp = CaptionExpander(ExpanderConfig(lm=tiny_lm, max_new_tokens=4, cache_size=5))
    exp.expand(UNCHECKED, [str(i) for i in range(len(UNCHECKED))], variants=2, seed=0)
    assert len(exp._cache) == 5


def test_no_check_applies_no_domain_rule_and_rows_use_derive_seed(tiny_lm: str) -> None:
    exp = CaptionExpander(ExpanderConfig(lm=tiny_lm, max_new_tokens=6, max_resamples=3, cache_size=0))
    assert exp.check is None
    result = exp.expand(["red star", "zebra"], ["k", "z"], variants=2, seed=7)
    assert result.stats["unchecked"] == 4 and result.stats["pinned"] == 0 and exp.model_calls == 1
    # row (key, variant, attempt) samples from derive_seed("caption", job seed, key, variant, attempt)
    alone = exp.generate_rows([exp.format_prompt("red star")], [derive_seed("caption", 7, "k", 1, 0)])
    assert alone[0] == result.captions[0][1]


def test_guard_resamples_then_falls_back_to_the_prompt(tiny_lm: str) -> None:
    # a random LM essentially never names "red star": every attempt is rejected, then the prompt is used
    exp = CaptionExpander(ExpanderConfig(lm=tiny_lm, max_new_tokens=6, max_resamples=2, keep_words=False),
                          check=ShapesFaithfulness())
    result = exp.expand(["red  star", "large blue circle"], ["a", "b"], variants=3, seed=0)
    assert result.captions == [["red star"] * 3, ["large blue circle"] * 3]
    assert result.stats["fallback"] == 6 and _outcomes(result.stats) == 6
    assert result.stats["generated"] == 6 * 3 and exp.model_calls == 3  # one batched call per attempt


def test_chat_template_path(tiny_lm: str) -> None:
    exp = CaptionExpander(ExpanderConfig(lm=tiny_lm, chat_template=True, instruction="Describe: {prompt}",
                                         max_new_tokens=5))
    expected = CHAT_TEMPLATE.replace("{% for m in messages %}", "").replace("{% endfor %}", "")
    expected = expected.replace("{{ m['content'] }}", "Describe: zebra")
    assert exp.format_prompt("zebra") == exp.tokenizer(expected, add_special_tokens=False)["input_ids"]
    result = exp.expand(["zebra"], ["k"], variants=2, seed=0)
    assert len(result.captions[0]) == 2 and result.stats["unchecked"] + result.stats["fallback"] == 2


def test_shipped_lm_is_small_faithful_and_varied(shipped: CaptionExpander) -> None:
    size = sum(p.stat().st_size for p in Path(SHIPPED_LM).rglob("*") if p.is_file())
    assert size < 10 * 2**20
    assert shipped.identity.startswith(str(SHIPPED_LM)) and "@" in shipped.identity
    prompts = ["red star", "large blue circle", "triangle on navy background", "small white cross in the center"]
    result = shipped.expand(prompts, prompts, variants=4, seed=0)
    # the guard makes every returned caption faithful; most of them are still the LM's own words
    assert _outcomes(result.stats) == 16 and result.stats["fallback"] < 8
    for prompt, caps in zip(prompts, result.captions):
        assert all(is_faithful(prompt, c) for c in caps)
    assert len(set(result.captions[0])) >= 3  # unstated details vary between variants


def test_shipped_lm_determinism_across_batches(shipped: CaptionExpander) -> None:
    prompts = ["red star", "green square", "purple star in the top left", "cyan object"]
    keys = ["p0", "p1", "p2", "p3"]
    together = shipped.expand(prompts, keys, variants=2, seed=5).captions
    assert [shipped.expand([p], [k], variants=2, seed=5).captions[0] for p, k in zip(prompts, keys)] == together


def test_keep_words_on_a_random_lm_keeps_every_stated_word(tiny_lm: str) -> None:
    cfg = ExpanderConfig(lm=tiny_lm, max_new_tokens=8, max_resamples=1, cache_size=0)
    exp = CaptionExpander(cfg, check=ShapesFaithfulness())
    prompts = ["red star", "large blue circle", "zebra"]
    result = exp.expand(prompts, ["a", "b", "c"], variants=4, seed=1)
    assert result.stats["pinned"] > 0 and result.stats["not_understood"] == 4  # "zebra": never called faithful
    for prompt, words, caps in zip(prompts[:2], (["red", "star"], ["large", "blue", "circle"]), result.captions):
        assert all(keeps_words(words, c) and is_faithful(prompt, c) for c in caps), caps
    assert exp.expand(prompts[::-1], ["c", "b", "a"], variants=4, seed=1).captions == result.captions[::-1]


def test_shapes_check_states_conditions_and_pins() -> None:
    f = ShapesFaithfulness()
    assert f.stated_words("a small green square on a gray background") == ["small", "green", "square", "gray",
                                                                         "background"]
    assert f.stated_words("red blue star") == ["star"]  # a contradiction states no colour
    assert f.stated_words("zebra") == []
    # the LM is asked in its corpus's words; a prompt with other words keeps them, synonyms made canonical
    assert f.condition("a small green square on a gray background") == "small green square on gray background"
    assert f.condition("Crimson star in the upper-left") == "red star in the top left"
    assert f.condition("glowing azure box") == "glowing blue square"
    # a synonym or another value becomes the user's word; the article follows it
    assert f.pin("azure square", "an emerald box, small, on a dark blue backdrop") == \
        "an azure square, small, on a dark blue backdrop"
    assert f.pin("green circle", "an orange disc") == "a green circle"
    # missing attributes go where the corpus puts them
    assert f.pin("a small crimson star in the top left on a navy backdrop", "an orange five-pointed star") == \
        "a small crimson star on a navy backdrop in the top left"
    assert f.pin("large white cross", "a red cross") == "a large white cross"
    # a colour the GAN never saw in a caption is written with its canonical word after it
    assert f.pin("ruby star on silver background", "a star on a black background") == \
        "a ruby red star on a silver gray background"
    assert f.pin("red star", "nothing to hold a colour") == "nothing to hold a colour"  # no noun: unchanged
    for prompt, caption in [("crimson star", "a scarlet star at the top right"), ("teal circle", "a small shape")]:
        pinned = f.pin(prompt, caption)
        assert f.check(prompt, pinned) and keeps_words(f.stated_words(prompt), pinned)


KEEP = ["crimson star", "azure square", "scarlet circle", "a small green square on a gray background",
        "a large ruby triangle in the upper-left corner on a silver backdrop"]
KEPT = [["crimson", "star"], ["azure", "square"], ["scarlet", "circle"],
        ["small", "green", "square", "gray", "background"],
        ["large", "ruby", "triangle", "upper-left", "silver", "backdrop"]]


def test_keep_words_on_the_shipped_lm(shipped: CaptionExpander) -> None:
    keys = [f"k{i}" for i in range(len(KEEP))]
    result = shipped.expand(KEEP, keys, variants=6, seed=3)
    assert result.stats["faithful"] == 30  # every first draft kept the words: no resample, no fallback
    for prompt, words, caps in zip(KEEP, KEPT, result.captions):
        assert all(keeps_words(words, c) and is_faithful(prompt, c) for c in caps), caps
        assert len(set(caps)) >= 4  # the LM still picks the unstated details
    alone = [shipped.expand([p], [k], variants=6, seed=3).captions[0] for p, k in zip(KEEP[::-1], keys[::-1])]
    assert alone == result.captions[::-1]
    # without keep-words the LM writes its own synonyms
    own = CaptionExpander(ExpanderConfig(cache_size=0, keep_words=False), check=ShapesFaithfulness())
    loose = own.expand(KEEP[:3], keys[:3], variants=6, seed=3)
    assert not all(keeps_words(w, c) for w, caps in zip(KEPT, loose.captions) for c in caps)
    assert loose.stats["pinned"] == 0


def test_generate_job_builds_the_expander_with_the_check(tiny_lm: str, tmp_path: Path) -> None:
    from llmgan.job.config import OUTPUT_DEFINING, GenerateConfig
    from llmgan.job.stages import ShardExpander

    assert "keep_words" in OUTPUT_DEFINING
    with pytest.raises(UserError, match="^--keep-words "):
        GenerateConfig(prompts="p.parquet", keep_words="no")  # type: ignore[arg-type]
    from llmgan.io.storage import Storage

    stage = ShardExpander(GenerateConfig(prompts=str(tmp_path / "p.parquet"), keep_words=False))
    assert stage.expander is None  # loaded with the first shard, so a bad model fails a retried shard
    pq.write_table(pa.table({"prompt": ["red star"]}), tmp_path / "p.parquet")
    stage._load(Storage())
    assert isinstance(stage.expander.check, ShapesFaithfulness) and stage.expander.config.keep_words is False
    # the user's words are the contract whatever the LM: a user's LM gets the GAN's domain check too
    own = ShardExpander(GenerateConfig(prompts=str(tmp_path / "p.parquet"), lm=tiny_lm))
    own._load(Storage())
    assert isinstance(own.expander.check, ShapesFaithfulness)
    result = runner.invoke(app, ["generate", "--help"])
    assert "--no-keep-words" in result.stdout


def test_bad_lm_is_one_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        CaptionExpander(ExpanderConfig(lm=str(tmp_path / "missing")))
    with pytest.raises(UserError, match="config.json"):
        CaptionExpander(ExpanderConfig(lm=str(tmp_path)))


runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_expand_cli_prints_n_lines(tiny_lm: str) -> None:
    result = runner.invoke(app, ["expand", "crimson star", "-n", "3", "--seed", "1"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and all(is_faithful("crimson star", line) and "crimson" in line for line in lines)
    assert "3 expansions: 3 faithful" in result.stderr and "check shapes" in result.stderr
    again = runner.invoke(app, ["expand", "crimson star", "-n", "3", "--seed", "1"])
    assert again.stdout == result.stdout
    loose = runner.invoke(app, ["expand", "crimson star", "-n", "3", "--seed", "1", "--no-keep-words"])
    assert loose.exit_code == 0 and loose.stdout != result.stdout
    unchecked = runner.invoke(app, ["expand", "red star", "-n", "2", "--check", "none"])
    assert unchecked.exit_code == 0 and "2 unchecked" in unchecked.stderr
    generic = runner.invoke(app, ["expand", "zebra", "-n", "2", "--lm", tiny_lm, "--temperature", "0.5"])
    assert generic.exit_code == 0 and len(generic.stdout.splitlines()) == 2 and "check shapes" in generic.stderr
    assert "2 not understood" in generic.stderr and "not understood by the shapes domain: zebra" in generic.stderr


def test_expand_cli_bad_values_are_one_line(tmp_path: Path) -> None:
    for args, words in [(["--lm", str(tmp_path / "nope")], "not found"), (["--check", "vocab"], "--check must be"),
                        (["--top-p", "1.5"], "--top-p must be"), (["-n", "0"], "-n must be")]:
        result = runner.invoke(app, ["expand", "red star", *args])
        assert result.exit_code == 2, args
        assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert words in result.stderr and result.stdout == ""
