"""The frozen open-vocabulary prompt set: pinned bytes, a builder that reproduces them, valid truths, clean splits."""

from __future__ import annotations

import collections
import hashlib
import re

import pytest

from benchmarks import prompt_sets
from benchmarks.prompt_sets import build_openvocab
from llmgan.domains.shapes import vocab

NAME = "openvocab-v1"


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return prompt_sets.load(NAME)


def test_file_matches_its_pin() -> None:
    data = prompt_sets.path(NAME).read_bytes()
    assert hashlib.sha256(data).hexdigest() == prompt_sets.FROZEN[NAME]


def test_builder_rebuilds_the_file_byte_for_byte(tmp_path) -> None:
    out = tmp_path / f"{NAME}.jsonl"
    build_openvocab.main(["--out", str(out)])
    assert out.read_bytes() == prompt_sets.path(NAME).read_bytes()


def test_load_refuses_a_changed_file(tmp_path, monkeypatch) -> None:
    changed = prompt_sets.path(NAME).read_bytes().replace(b"sapphire", b"sapphyre", 1)
    (tmp_path / f"{NAME}.jsonl").write_bytes(changed)
    monkeypatch.setattr(prompt_sets, "DIR", tmp_path)
    with pytest.raises(ValueError, match="frozen"):
        prompt_sets.load(NAME)


def test_ids_unique_and_fields_valid(rows) -> None:
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({r["prompt"] for r in rows}) == len(rows)
    for r in rows:
        assert r["kind"] in build_openvocab.KINDS, r
        for attr, value in r["expect"].items():
            assert value in vocab.VALUES[attr], r
        words = set(re.findall(r"[\w+'-]+", r["prompt"].lower()))
        assert all(w == w.lower() and w in words for w in r["undrawable"]), r
        assert r["expect"] or r["undrawable"], r


def test_splits_disjoint_and_both_present_per_kind(rows) -> None:
    assert {r["id"] for r in prompt_sets.load(NAME, "tune")}.isdisjoint(
        r["id"] for r in prompt_sets.load(NAME, "holdout"))
    per_group = collections.defaultdict(set)
    per_kind = collections.defaultdict(collections.Counter)
    for r in rows:
        per_group[r["group"]].add(r["split"])
        per_kind[r["kind"]][r["split"]] += 1
    assert all(len(s) == 1 for s in per_group.values())  # a colour name or phrase never straddles the split
    assert set(per_kind) == set(build_openvocab.KINDS)
    for kind, counts in per_kind.items():
        assert counts["tune"] > 0 and counts["holdout"] > 0, kind
        assert sum(counts.values()) >= 30, kind
    tune = sum(r["split"] == "tune" for r in rows) / len(rows)
    assert 0.2 < tune < 0.4
