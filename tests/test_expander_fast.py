"""The expander's fast decoding loop (static KV cache) against the reference loop (Hugging Face forward per step):
the same logits bit for bit and the same captions on the shipped LMs over many prompts, seeds and batch sizes;
the exact top-p shortcut; batch independence; and the fallback to the reference loop for other models."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from benchmarks.expand import combined_prompts, heldout_prompts, synonym_prompts
from llmgan.errors import UserError
from llmgan.text import fast_decode
from llmgan.text.expander import SHIPPED_LM, CaptionExpander, ExpanderConfig
from llmgan.text.sampling import sample_tokens, sample_tokens_fast

EMOJI_LM = SHIPPED_LM.parent / "emoji-captioner"
WORDS = "short long : a an the small large red blue green star circle square in on at top left right of".split()
# prompts of many lengths (left padding differs per batch), an empty one and one longer than the LM's positions
ODD = ["", "star", "a " * 200 + "red star", "zebra crossing at dawn", "doughnut emoji, twitter style"]


def _pair(**kwargs: object) -> tuple[CaptionExpander, CaptionExpander]:
    cfg = ExpanderConfig(cache_size=0, max_resamples=0, **kwargs)  # type: ignore[arg-type]
    return CaptionExpander(cfg), CaptionExpander(replace(cfg, engine="reference"))


def _rows(exp: CaptionExpander, prompts: list[str], seeds: list[int], batch: int) -> list[str]:
    out: list[str] = []
    for s in range(0, len(prompts), batch):
        out += exp.generate_rows([exp.format_prompt(p) for p in prompts[s:s + batch]], seeds[s:s + batch])
    return out


@pytest.fixture(scope="module")
def shapes_pair() -> tuple[CaptionExpander, CaptionExpander]:
    fast, ref = _pair()
    assert (fast.engine, ref.engine) == ("fast", "reference") and fast.engine_note is None
    return fast, ref


@pytest.mark.parametrize("lm", [None, str(EMOJI_LM)], ids=["shapes", "emoji"])
def test_fast_gives_the_reference_captions_on_the_shipped_lms(lm: str | None) -> None:
    fast, ref = _pair(lm=lm) if lm else _pair()
    prompts = heldout_prompts(20) + synonym_prompts(20) + combined_prompts(20) + ODD
    for batch, seed0, n in ((1, 0, 10), (7, 100, len(prompts)), (64, 200, len(prompts))):
        seeds = list(range(seed0, seed0 + n))
        got = _rows(fast, prompts[-n:], seeds, batch)
        assert got == _rows(ref, prompts[-n:], seeds, batch), batch
        assert sum(bool(c) for c in got) > n // 2  # real captions, not all empty


def test_fast_logits_are_the_reference_bits(shapes_pair: tuple[CaptionExpander, CaptionExpander]) -> None:
    """Stronger than equal captions: every step's logits are identical, so no seed can tell the loops apart."""
    logged: dict[str, list[torch.Tensor]] = {"fast": [], "reference": []}
    for exp, attr in zip(shapes_pair, ("_sample_fast", "_sample")):
        own = getattr(exp, attr)
        setattr(exp, attr, lambda logits, u, own=own, log=logged[exp.engine]: (log.append(logits.clone()), own(logits, u))[1])
    try:
        prompts = heldout_prompts(20) + ODD
        for exp in shapes_pair:
            _rows(exp, prompts, list(range(len(prompts))), 25)
    finally:
        for exp, attr in zip(shapes_pair, ("_sample_fast", "_sample")):
            delattr(exp, attr)
    assert len(logged["fast"]) == len(logged["reference"]) > 5
    assert all(torch.equal(a, b) for a, b in zip(logged["fast"], logged["reference"]))


def test_fast_engine_other_sampling_settings(shapes_pair: tuple[CaptionExpander, CaptionExpander]) -> None:
    prompts = synonym_prompts(12) + ODD
    for temperature, top_p in ((0.0, 1.0), (1.0, 1.0), (1.5, 0.5), (0.7, 0.99)):
        for exp in shapes_pair:
            exp.config = replace(exp.config, temperature=temperature, top_p=top_p, max_new_tokens=20)
        seeds = list(range(len(prompts)))
        assert _rows(shapes_pair[0], prompts, seeds, 8) == _rows(shapes_pair[1], prompts, seeds, 8)
    for exp in shapes_pair:
        exp.config = replace(exp.config, temperature=0.9, top_p=0.95, max_new_tokens=48)


def test_fast_engine_is_batch_independent(shapes_pair: tuple[CaptionExpander, CaptionExpander]) -> None:
    fast = shapes_pair[0]
    prompts = heldout_prompts(10) + ["red star", "a large blue circle in the top left"]
    keys = [f"k{i}" for i in range(len(prompts))]
    together = fast.expand(prompts, keys, variants=3, seed=4).captions
    alone = [fast.expand([p], [k], variants=3, seed=4).captions[0] for p, k in zip(prompts, keys)]
    assert together == alone
    assert fast.expand(prompts[::-1], keys[::-1], variants=3, seed=4).captions == together[::-1]


def test_top_p_shortcut_is_exact() -> None:
    """`sample_tokens_fast` against the definition: peaked and flat rows, exact ties, vocabularies smaller than its
    top-k tiers, every temperature and top-p corner."""
    g = torch.Generator().manual_seed(0)
    for trial in range(24):
        vocab = (2, 4, 5, 17, 498, 1024)[trial % 6]
        logits = torch.randn(96, vocab, generator=g) * torch.rand(96, 1, generator=g) * 16
        if trial % 3 == 0:
            logits = (logits * 2).round() / 2
        if trial % 4 == 0:
            logits[:, : max(vocab // 2, 1)] = logits[:, :1]
        u = torch.rand(96, generator=g, dtype=torch.float64)
        for temperature in (0.0, 0.5, 0.9, 2.0):
            for top_p in (0.05, 0.5, 0.95, 0.999, 1.0):
                assert torch.equal(sample_tokens(logits, u, temperature, top_p),
                                   sample_tokens_fast(logits, u, temperature, top_p)), (trial, temperature, top_p)


def _tokenizer(out: Path, chat: bool = False) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<eos>", "<unk>", "\n", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split("\n", behavior="isolated"), pre_tokenizers.WhitespaceSplit()])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", unk_token="<unk>", pad_token="<eos>")
    if chat:
        fast.chat_template = "{% for m in messages %}<u> {{ m['content'] }}\n{% endfor %}<a>"
    fast.save_pretrained(out)


@pytest.fixture(scope="module")
def random_lms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Random tiny LMs built here (nothing downloaded): GPT-2 with a chat template and 24 positions (prompts fill
    them) and a Llama (an architecture the fast loop does not run)."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    n = len(WORDS) + 3
    torch.manual_seed(0)
    made = {
        "gpt2": GPT2LMHeadModel(GPT2Config(vocab_size=n, n_positions=24, n_embd=32, n_layer=2, n_head=2,
                                           eos_token_id=0, bos_token_id=0, pad_token_id=0)),
        "llama": LlamaForCausalLM(LlamaConfig(vocab_size=n, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                              num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                                              eos_token_id=0, bos_token_id=0, pad_token_id=0)),
    }
    dirs = {}
    for name, model in made.items():
        out = tmp_path_factory.mktemp(name)
        model.save_pretrained(out)
        _tokenizer(out, chat=name == "gpt2")
        dirs[name] = str(out)
    return dirs


def test_chat_template_and_position_limit_on_the_fast_loop(random_lms: dict[str, str]) -> None:
    """A random LM's flat distributions take the top-p shortcut's full-sort tier; prompts from 3 to 24 positions
    leave 21 to 1 steps (max_positions), with and without the chat template."""
    prompts = ["red star", "a large blue circle in the top left", "small " * 30 + "star", "zebra"]
    for chat in (False, True):
        extra = {"chat_template": True, "instruction": "Describe: {prompt}"} if chat else {}
        fast, ref = _pair(lm=random_lms["gpt2"], max_new_tokens=30, **extra)
        assert fast.engine == "fast" and fast._max_positions == 24
        for batch in (1, 3):
            seeds = list(range(len(prompts)))
            assert _rows(fast, prompts, seeds, batch) == _rows(ref, prompts, seeds, batch)
        keys = [f"k{i}" for i in range(len(prompts))]
        assert fast.expand(prompts, keys, 2, seed=3).captions == ref.expand(prompts, keys, 2, seed=3).captions


def test_models_the_fast_loop_cannot_run_use_the_reference(random_lms: dict[str, str]) -> None:
    exp = CaptionExpander(ExpanderConfig(lm=random_lms["llama"], cache_size=0, max_new_tokens=6))
    assert exp.engine == "reference" and exp._fast is None and "LlamaForCausalLM" in (exp.engine_note or "")
    result = exp.expand(["red star", "zebra"], ["a", "b"], variants=2, seed=0)
    assert result.stats["unchecked"] + result.stats["fallback"] == 4
    again = CaptionExpander(replace(exp.config, engine="reference")).expand(["red star", "zebra"], ["a", "b"], 2, 0)
    assert again.captions == result.captions
    # the loader picks sdpa; a model that runs eager attention (its own choice) computes softmax differently
    from transformers import AutoModelForCausalLM

    eager = AutoModelForCausalLM.from_pretrained(random_lms["gpt2"], attn_implementation="eager")
    assert "'eager'" in (fast_decode.unsupported(eager) or "")
    assert fast_decode.unsupported(AutoModelForCausalLM.from_pretrained(random_lms["gpt2"])) is None
    with pytest.raises(ValueError, match="cannot run"):
        fast_decode.Gpt2Decoder(eager)
    chosen = CaptionExpander(ExpanderConfig(lm=random_lms["gpt2"], engine="reference"))
    assert chosen.engine == "reference" and chosen._fast is None and chosen.engine_note is None


def test_expand_cli_engines_print_the_same_lines(random_lms: dict[str, str]) -> None:
    from typer.testing import CliRunner

    from llmgan.cli.app import app

    runner = CliRunner()
    fast = runner.invoke(app, ["expand", "crimson star", "-n", "3", "--seed", "2"])
    ref = runner.invoke(app, ["expand", "crimson star", "-n", "3", "--seed", "2", "--lm-engine", "reference"])
    assert fast.exit_code == ref.exit_code == 0 and fast.stdout == ref.stdout and len(fast.stdout.splitlines()) == 3
    assert "fast engine)" in fast.stderr and "reference engine)" in ref.stderr
    llama = runner.invoke(app, ["expand", "zebra", "-n", "2", "--lm", random_lms["llama"]])
    assert llama.exit_code == 0 and "reference engine: architecture LlamaForCausalLM" in llama.stderr
    bad = runner.invoke(app, ["expand", "red star", "--lm-engine", "vllm"])
    assert bad.exit_code == 2 and bad.stderr.strip() == "error: --lm-engine must be one of fast, reference, got 'vllm'"


def test_engine_option_is_checked() -> None:
    with pytest.raises(UserError, match="^--lm-engine must be one of fast, reference, got 'vllm'$"):
        ExpanderConfig(engine="vllm")
