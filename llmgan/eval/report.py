"""`evaluate`: generate images from a dataset's captions, judge them with the classifier, write report.json + plots.

Per split (training-split and held-out-split captions, when the data has a split): per-attribute and joint
accuracy against the caption's labels, Fréchet distance in classifier feature space beside the
real-vs-real floor, an Inception-Score-style figure, and diversity (pixel distance and SSIM among images
of one caption, beside the same figures for real images with the same labels), the consistency scorer's
verdicts (mean, share below 0.5, beside real images') and, for shapes, SSIM/PSNR against the real image of
the same caption. report.json is written last, so its presence means the evaluation is complete.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from typing import Any

import numpy as np

from llmgan.domains import detect_domain
from llmgan.errors import StorageError, UserError
from llmgan.eval import metrics, plots
from llmgan.eval.classifier import (
    CONFIG_FILE,
    LABEL_ATTRIBUTES,
    AttributeClassifier,
    accuracy_of,
    load_classifier,
    train_classifier,
)
from llmgan.eval.consistency import ClassifierScorer, load_scorer
from llmgan.eval.options import EvalOptions
from llmgan.io.storage import Storage, join

log = logging.getLogger(__name__)

_SPLIT_CODE = {"train": 0, "heldout": 1, "all": 2}
DIVERSITY_GROUPS = 20  # captions whose images are compared with each other
PER_GROUP = 8  # images per caption for the diversity and SSIM figures
GRID_ROWS = 8
CHUNK = 256
SHIPPED = "shipped:shapes32"
PSNR_CAP = 100.0  # dB; identical pairs (inf) count as this, so means stay finite


def _row_splits(labels: dict[str, list[str]], domain: Any) -> list[str] | None:
    """Each row's split: the data's own `split` labels, else its domain's held-out rule, else None."""
    if "split" in labels and all(labels["split"]):
        return list(labels["split"])
    return domain.row_splits(labels)


def resolve_classifier(path: str | None, images: np.ndarray, labels: dict[str, list[str]], data: str, out_dir: str,
                       storage: Storage, seed: int, steps: int) -> tuple[AttributeClassifier, str]:
    """The classifier to judge with, and where it came from.

    Given path > shipped shapes classifier (when the data has all five shapes labels) > a classifier
    trained on the data's `label` column, cached in out_dir/classifier and reused for the same data.
    """
    if path is not None:
        return load_classifier(path, storage), path
    shipped = load_classifier(None)
    if all(a in labels and all(labels[a]) for a in shipped.attributes):
        return shipped, SHIPPED
    if "label" not in labels or not all(labels["label"]):
        raise UserError(f"{data} has no label columns ({', '.join(LABEL_ATTRIBUTES)}) to judge generated images "
                        f"by; give a classifier with --classifier")
    cache = join(out_dir, "classifier")
    if storage.exists(join(cache, CONFIG_FILE)):
        clf = load_classifier(cache, storage)
        if clf.info.get("data") == data and clf.attributes == ["label"]:
            log.info("reusing the classifier cached in %s", cache)
            return clf, cache
    log.info("training a classifier on the real images' `label` column (%d images)", len(images))
    clf = train_classifier(images, {"label": labels["label"]}, seed=seed + 1, steps=steps, progress=True)
    clf.info["data"] = data
    clf.save(cache, storage)
    log.info("classifier validation accuracy %s", clf.info.get("val_accuracy"))
    return clf, cache


class _Run:
    """Shared state of one evaluation: model, encoder, classifier, data."""

    def __init__(self, model: Any, encoder: Any, clf: AttributeClassifier, data: Any, attrs: list[str],
                 opts: EvalOptions, emb_cache: str | None, storage: Storage, scorer: Any = None,
                 domain: Any = None) -> None:
        self.model, self.encoder, self.clf, self.data, self.attrs = model, encoder, clf, data, attrs
        self.opts, self.emb_cache, self.storage, self.scorer, self.domain = opts, emb_cache, storage, scorer, domain

    def embed(self, captions: list[str]) -> np.ndarray:
        from llmgan.text.encoder import embed_dataset_captions

        unique = list(dict.fromkeys(captions))
        try:  # reuse the training run's caption-embedding table when there is one
            vecs = embed_dataset_captions(unique, self.encoder, self.emb_cache, self.storage)
        except (StorageError, OSError):
            vecs = self.encoder.encode(unique)
        where = {c: i for i, c in enumerate(unique)}
        return vecs[[where[c] for c in captions]]

    def generate(self, captions: list[str], seeds: list[int], what: str) -> np.ndarray:
        emb = self.embed(captions)
        out = []
        for start in range(0, len(captions), CHUNK):
            imgs, _ = self.model.sample(emb[start:start + CHUNK], seeds[start:start + CHUNK],
                                        best_of=self.opts.best_of, truncation=self.opts.truncation)
            out.append(imgs)
            log.info("%s: generated %d/%d", what, min(start + CHUNK, len(captions)), len(captions))
        return np.concatenate(out)


def _inception(probs: dict[str, np.ndarray]) -> dict[str, float]:
    out = {a: metrics.inception_score(p) for a, p in probs.items()}
    out["mean"] = float(np.mean(list(out.values())))
    return out


def _evaluate_split(run: _Run, name: str, rows: np.ndarray) -> tuple[dict[str, Any], list]:
    from llmgan.io.seeds import derive_seed

    opts, data, clf, attrs = run.opts, run.data, run.clf, run.attrs
    code = _SPLIT_CODE[name]
    rng = np.random.default_rng([opts.seed, code])
    pick = rng.choice(rows, size=opts.n, replace=len(rows) < opts.n)
    captions = [data.captions[i] for i in pick]
    labels = {a: [data.labels[a][i] for i in pick] for a in attrs}
    images = run.generate(captions, [derive_seed(opts.seed, code, k) for k in range(opts.n)], f"{name} captions")
    feats, probs = clf.run(images)
    accuracy = accuracy_of(clf.predict_from_probabilities(probs), labels)

    # real images of the same split: two disjoint samples, A against the generated set, B for the floor
    perm = rng.permutation(rows)
    m = min(opts.n, len(rows) // 2)
    real_sel = perm[:2 * m] if m >= 2 else perm
    real_feats, real_probs = clf.run(data.images[real_sel])
    real_labels = {a: [data.labels[a][i] for i in real_sel] for a in attrs}
    result: dict[str, Any] = {
        "n": opts.n,
        "unique_captions": len(set(captions)),
        "real_images": int(len(rows)),
        "accuracy": accuracy,
        "real_accuracy": accuracy_of(clf.predict_from_probabilities(real_probs), real_labels),
        "frechet_distance": None, "frechet_floor": None, "frechet_ratio": None, "frechet_n": int(m),
        "inception_score": _inception({a: probs[a] for a in attrs}),
        "inception_score_real": _inception({a: real_probs[a] for a in attrs}),
    }
    if m >= 2:
        fa, fb = real_feats[:m], real_feats[m:2 * m]
        fd = metrics.frechet_distance(feats[:m], fa)
        floor = metrics.frechet_distance(fb, fa)
        result.update(frechet_distance=fd, frechet_floor=floor, frechet_ratio=fd / floor if floor > 0 else None)

    # diversity: PER_GROUP images of one caption vs real images with the same labels
    groups: dict[tuple, list[int]] = {}
    for i in rows:
        groups.setdefault(tuple(data.labels[a][i] for a in attrs), []).append(int(i))
    keys = sorted(groups, key=lambda k: (-min(len(groups[k]), PER_GROUP), k))
    with_pairs = [k for k in keys if len(groups[k]) >= 2]
    chosen_keys = with_pairs if with_pairs else keys
    order = rng.permutation(len(chosen_keys))[:DIVERSITY_GROUPS]
    chosen = [chosen_keys[i] for i in sorted(order)]
    div_caps = [data.captions[groups[k][0]] for k in chosen for _ in range(PER_GROUP)]
    div_seeds = [derive_seed(opts.seed, code, 1, g, j) for g in range(len(chosen)) for j in range(PER_GROUP)]
    div_imgs = run.generate(div_caps, div_seeds, f"{name} diversity").reshape(len(chosen), PER_GROUP,
                                                                              *images.shape[1:])
    gen_d = [metrics.mean_pairwise_distance(imgs) for imgs in div_imgs]
    gen_s = metrics.mean_pairwise_ssim_groups(list(div_imgs))
    reals = [data.images[groups[k][:PER_GROUP]] for k in chosen]
    real_sets = [r for r in reals if len(r) >= 2]
    real_d = [metrics.mean_pairwise_distance(r) for r in real_sets]
    real_s = metrics.mean_pairwise_ssim_groups(real_sets)
    grid = [(data.captions[groups[k][0]], reals[g][0], div_imgs[g][:PER_GROUP - 1])
            for g, k in enumerate(chosen[:GRID_ROWS])]

    def mean(xs: list[float]) -> float | None:
        return float(np.mean(xs)) if xs else None

    result["diversity"] = {"generated": mean(gen_d), "real": mean(real_d), "captions": len(chosen),
                           "per_caption": PER_GROUP}
    result["diversity"]["ratio"] = (result["diversity"]["generated"] / result["diversity"]["real"]
                                    if real_d and result["diversity"]["real"] else None)
    result["ssim"] = {"generated": mean(gen_s), "real": mean(real_s)}
    result["consistency"] = _consistency(run, images, captions, real_sel)
    result["reference"] = _reference(run, images, pick, rows, rng)
    return result, grid


def _consistency(run: _Run, images: np.ndarray, captions: list[str], real_sel: np.ndarray) -> dict[str, Any] | None:
    """Distribution of the consistency scorer's verdicts on the generated images, beside real images' own.

    The caption is the prompt here (eval has no separate user prompt).
    """
    scorer = run.scorer
    if scorer is None:
        return None
    # the matcher reads embeddings of its own text encoder; reuse the GAN's only when they are the same
    matcher = getattr(scorer, "matcher", None)
    same = matcher is not None and matcher.text_encoder == run.model.text_encoder
    real_caps = [run.data.captions[i] for i in real_sel]

    def summary(verdicts: list) -> dict[str, Any]:
        s = np.array([v.score for v in verdicts], np.float64)
        out: dict[str, Any] = {"n": len(s), "mean": float(s.mean()) if len(s) else None,
                               "below_0.5": float((s < 0.5).mean()) if len(s) else None}
        wrong = Counter(a for v in verdicts for a in v.disagree)
        if wrong:
            out["disagree"] = {a: c / len(s) for a, c in sorted(wrong.items())}
        return out

    gen = scorer.score(images, captions, captions, emb=run.embed(captions) if same else None)
    real = scorer.score(run.data.images[real_sel], real_caps, real_caps, emb=run.embed(real_caps) if same else None)
    return {"scorer": scorer.name, "generated": summary(gen), "real": summary(real)}


def _reference(run: _Run, images: np.ndarray, pick: np.ndarray, rows: np.ndarray,
               rng: np.random.Generator) -> dict[str, Any] | None:
    """SSIM / PSNR of each generated image against the real image of the caption it was drawn from.

    Only where a caption fixes its image up to jitter (the shapes labels): image k, drawn from row pick[k]'s
    caption, is paired with row pick[k]'s image. The floor pairs that real image with another real image
    of the same five labels (other jitter and wording): what a perfect generator would reach.
    """
    data = run.data
    fixed = run.domain.reference_attributes
    if not fixed or not set(fixed) <= set(run.attrs):
        return None
    gen_ssim = metrics.ssim(images, data.images[pick])
    gen_psnr = np.minimum(metrics.psnr(images, data.images[pick]), PSNR_CAP)
    groups: dict[tuple, list[int]] = {}
    for i in rows:
        groups.setdefault(tuple(data.labels[a][i] for a in fixed), []).append(int(i))
    pairs = []
    for i in pick:
        same = groups[tuple(data.labels[a][i] for a in fixed)]
        if len(same) > 1:
            j = same[int(rng.integers(len(same) - 1))]
            pairs.append((int(i), j if j != i else same[-1]))
    out: dict[str, Any] = {"pairing": "generated from row i's caption vs row i's real image",
                           "ssim": float(gen_ssim.mean()), "psnr": float(gen_psnr.mean()),
                           "ssim_real": None, "psnr_real": None, "real_pairs": len(pairs)}
    if pairs:
        a, b = data.images[[p[0] for p in pairs]], data.images[[p[1] for p in pairs]]
        out["ssim_real"] = float(metrics.ssim(a, b).mean())
        out["psnr_real"] = float(np.minimum(metrics.psnr(a, b), PSNR_CAP).mean())
    return out


def evaluate(
    ckpt: str | None,
    data: str,
    out_dir: str,
    n: int = 2000,
    best_of: int = 1,
    seed: int = 0,
    split: str = "both",
    *,
    classifier: str | None = None,
    truncation: float = 1.0,
    classifier_steps: int = 1500,
    consistency: str | None = "auto",
    storage: Storage | None = None,
    device: str = "cpu",
    cache_dir: str | None = None,
) -> dict[str, Any]:
    """Evaluate a GAN checkpoint on a labelled dataset's captions; writes out_dir/report.json and PNG plots.

    split: "both" = training-split and held-out-split captions separately when the data has a split
    (else all captions), or one of "train", "heldout", "all". Returns the report dict.
    """
    from llmgan.data.readers import load_captioned
    from llmgan.gan.inference import GanModel
    from llmgan.text.encoder import TextEncoder, embedding_cache_url

    opts = EvalOptions(n=n, best_of=best_of, seed=seed, split=split, truncation=truncation,
                       classifier_steps=classifier_steps)
    storage = storage or Storage()
    if not str(out_dir).strip():
        raise UserError("out_dir must not be empty")
    started = time.time()
    model = GanModel.load(ckpt, storage=storage, device=device, discriminator=best_of > 1)
    ds = load_captioned(data, model.image_size, storage=storage, channels=model.config.image_channels)
    clf, clf_source = resolve_classifier(classifier, ds.images, ds.labels, data, out_dir, storage, seed,
                                         classifier_steps)
    attrs = [a for a in clf.attributes if a in ds.labels]
    if not attrs:
        raise UserError(f"{data} has none of the classifier's label columns ({', '.join(clf.attributes)})")
    missing = [a for a in attrs if not all(ds.labels[a])]
    if missing:
        raise UserError(f"{data}: some rows have no {missing[0]!r} label")

    domain = detect_domain(ds.captions)
    row_split = _row_splits(ds.labels, domain)
    if opts.split == "all" or (opts.split == "both" and row_split is None):
        wanted = {"all": np.arange(len(ds))}
    else:
        if row_split is None:
            raise UserError(f"split={opts.split!r}: {data} has no split column (and no shape/color labels)")
        names = ["train", "heldout"] if opts.split == "both" else [opts.split]
        wanted = {s: np.flatnonzero(np.asarray(row_split) == s) for s in names}
        for s in [s for s, r in wanted.items() if not len(r)]:
            log.warning("%s has no %s-split rows; that split is not evaluated", data, s)
        wanted = {s: r for s, r in wanted.items() if len(r)}
        if not wanted:
            raise UserError(f"{data} has no rows in split {opts.split!r}")

    encoder = TextEncoder(model=model.text_encoder)
    scorer = load_scorer(consistency, model.path, storage, device)
    if scorer is None and consistency in (None, "auto") and clf_source == SHIPPED:  # shapes data: its classifier fits
        scorer = ClassifierScorer(domain, clf)
    emb_cache = embedding_cache_url(data, encoder.identity, cache_dir)  # the training run's table, when it was
    run = _Run(model, encoder, clf, ds, attrs, opts, emb_cache, storage, scorer, domain)  # trained with this cache
    splits: dict[str, Any] = {}
    grids: dict[str, list] = {}
    for name, rows in wanted.items():
        splits[name], grids[name] = _evaluate_split(run, name, rows)

    files = {"accuracy_plot": "accuracy.png"}
    series = {s: r["accuracy"] for s, r in splits.items()}
    title = f"per-attribute accuracy, {n} images per split, best-of {best_of}"
    storage.write_bytes(join(out_dir, "accuracy.png"), plots.png_bytes(plots.accuracy_bars(series, title)))
    for name, grid in grids.items():
        files[f"samples_{name}"] = f"samples_{name}.png"
        storage.write_bytes(join(out_dir, f"samples_{name}.png"), plots.png_bytes(plots.sample_grid(grid)))

    report = {
        "checkpoint": model.path,
        "checkpoint_identity": model.identity,
        "step": model.meta.get("step"),
        "data": data,
        "data_images": len(ds),
        "n": n,
        "best_of": best_of,
        "seed": seed,
        "truncation": truncation,
        "split": split,
        "classifier": {"source": clf_source, "attributes": clf.attributes, "info": clf.info},
        "consistency_scorer": None if scorer is None else {"name": scorer.name, "spec": consistency},
        "attributes": attrs,
        "splits": splits,
        "files": files,
        "seconds": round(time.time() - started, 1),
    }
    storage.write_text(join(out_dir, "report.json"), json.dumps(report, indent=2, default=_json_default) + "\n")
    return report


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
