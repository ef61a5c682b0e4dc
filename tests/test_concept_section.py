"""The user-concept section (``interp.compare.concept``) on the bundled organism.

The concept is the organism's own: harmful requests (positive) against harmless ones (negative), written to
two JSON-lines files as a user would. The organism's post model was fine-tuned to refuse the harmful ones, so
both models should separate them linearly in their later layers, and adding the difference of means should
move harmless requests toward harmful on each model's own probe.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import interp
from interp.compare import _section, compare, register
from interp.compare.concept import STEERING_COLUMNS, _prepare, concept, concept_section, group_split
from interp.datasets import PromptSet, load

NAME = "harm"


def _texts(name: str) -> list[dict]:
    rows = []
    for split in ("train", "test"):
        ps = load(name, split)
        rows += [{"text": t, **m} for t, m in zip(ps.texts, ps.meta)]
    return rows


def _write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture(scope="module")
def pair():
    return interp.load_pair()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("concept")
    return {"positive": _write_jsonl(root / "harmful.jsonl", _texts("organism/harmful")),
            "negative": _write_jsonl(root / "harmless.jsonl", _texts("organism/harmless"))}


@pytest.fixture(scope="module")
def run(pair, files, tmp_path_factory):
    """The section registered for this run only (the registry is restored after), run through ``compare``."""
    out = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_section, "_REGISTERED", {})
        register(concept(NAME, files["positive"], files["negative"]))
        comparison = compare(pair=pair, concepts=[NAME], out=out, progress=False)
    return comparison.concepts[NAME], out


@pytest.fixture(scope="module")
def reference(pair, files):
    """An independent recomputation: the split with PromptSet.split, training activations of both models."""
    texts = {role: [json.loads(line)["text"] for line in open(path)] for role, path in files.items()}
    labelled = PromptSet.from_classes("ref", {"negative": texts["negative"], "positive": texts["positive"]})
    assert len(set(labelled.texts)) == len(labelled)  # rows are found by text below
    train, test = labelled.split(0.25, random_state=0)
    fit, val = train.split(0.2, random_state=0)
    X = {m: interp.collect(model, train, "resid_post", positions="last", batch_size=32, progress=False)["resid_post"]
         for m, model in pair}
    return {"train": train, "test": test, "fit": fit, "val": val, "X": X, "y": torch.tensor(train.labels)}


def _chosen(result) -> dict:
    layer = result.vectors["post"].layers[0]
    return result.per_layer[result.layers.index(layer)]


def test_accuracy_is_high_and_above_the_shuffled_label_null(run):
    result, _ = run
    best = _chosen(result)
    assert best["post_accuracy"] >= 0.9 and best["base_accuracy"] >= 0.75
    for m in ("base", "post"):
        assert best[f"{m}_accuracy_ci_low"] <= best[f"{m}_accuracy"] <= best[f"{m}_accuracy_ci_high"]
        assert best[f"{m}_accuracy_ci_low"] > best[f"{m}_accuracy_null"] + 0.1
        assert 0.35 < best[f"{m}_accuracy_null"] < 0.65
    assert best["cosine_base_post"] > best["cosine_base_post_null"]
    for key in ("transfer_base_to_post", "transfer_post_to_base", "transfer_base_to_post_auroc",
                "transfer_base_to_post_centred_ci_low", "base_accuracy_validation"):
        assert key in best


def test_directions_are_the_training_difference_of_means(run, reference):
    result, _ = run
    y = reference["y"]
    for m in ("base", "post"):
        X = reference["X"][m].double()
        expected = X[y == 1].mean(0) - X[y == 0].mean(0)  # [layer, d]
        torch.testing.assert_close(result.directions[f"{m}/mass_mean"].double(), expected, rtol=1e-4, atol=1e-5)
        vec = result.vectors[m]
        torch.testing.assert_close(vec.vectors[0].double(), expected[vec.layers[0]], rtol=1e-4, atol=1e-5)
        assert vec.site == "resid_post" and vec.scale == 1.0
        assert vec.meta["concept"] == NAME and vec.meta["layer"] == vec.layers[0]


def test_layer_is_the_argmax_of_validation_accuracy_on_training_rows(run, reference):
    result, _ = run
    train, val, test = reference["train"], reference["val"], reference["test"]
    assert set(val.texts) <= set(train.texts) and set(val.texts).isdisjoint(test.texts)
    is_val = torch.tensor([t in set(val.texts) for t in train.texts])
    y = reference["y"]
    accs = {}
    for m in ("base", "post"):
        X = reference["X"][m].double()
        Xf, yf = X[~is_val], y[~is_val]
        mu1, mu0 = Xf[yf == 1].mean(0), Xf[yf == 0].mean(0)  # [layer, d]
        w, b = mu1 - mu0, -((mu1 - mu0) * (mu1 + mu0) / 2).sum(-1)
        scores = torch.einsum("nld,ld->nl", X[is_val], w) + b
        accs[m] = ((scores > 0).long() == y[is_val][:, None]).double().mean(0).numpy()
        np.testing.assert_allclose([e[f"{m}_accuracy_validation"] for e in result.per_layer], accs[m], atol=1e-9)
    expected = result.layers[int(np.argmax(np.minimum(accs["base"], accs["post"])))]
    assert result.vectors["base"].layers[0] == result.vectors["post"].layers[0] == expected
    assert result.setup["n_validation"] == len(val) and result.setup["n_test"] == len(test)
    assert f"layer {expected} (chosen on {len(val)} validation prompts" in result.readings["summary"]


def test_the_manifest_lists_the_rows_of_every_split(run, reference):
    """fit, validation and test rows by id (sha256 of the text, 16 hex digits), as the reference split has them."""
    import hashlib

    _, out = run
    entries = json.loads((out / "report.json").read_text())["manifest"]["datasets"]
    got = {e["split"]: e["row_ids"] for e in entries if e["section"] == NAME and e["name"].startswith("concept/")}
    ids = lambda ps: sorted(hashlib.sha256(t.encode()).hexdigest()[:16] for t in ps.texts)  # noqa: E731
    assert {k: sorted(v) for k, v in got.items()} == {"fit": ids(reference["fit"]),
                                                       "validation": ids(reference["val"]),
                                                       "test": ids(reference["test"])}


def test_steering_with_the_own_direction_beats_the_random_null(run):
    result, _ = run
    table = result.tables["steering"]
    assert table["columns"] == STEERING_COLUMNS
    rows = [dict(zip(table["columns"], r)) for r in table["rows"]]
    assert {(r["model"], r["direction"]) for r in rows} == {
        (t, d) for t in ("base", "post") for d in ("base direction", "post direction", "random direction (null)")}
    for target in ("base", "post"):
        own = next(r for r in rows if r["model"] == target and r["direction"] == f"{target} direction")
        null = next(r for r in rows if r["model"] == target and r["direction"] == "random direction (null)")
        assert own["classified positive before"] < 0.3
        assert own["after, 95% CI"][0] > null["after, 95% CI"][1]  # the intervals do not meet
        assert own["probe score shift"] > 0.5 > null["probe score shift"]
        assert own["norm"] == pytest.approx(null["norm"], rel=1e-5)
        assert own["KL (nats)"] >= 0 and np.isfinite(own["KL (nats)"])


def test_report_files_and_cli_table(run, capsys):
    from interp.cli import print_concept
    from steering import load_vector

    result, out = run
    report = json.loads((out / "report.json").read_text())
    assert report["concepts"][NAME]["setup"]["positive"].endswith("harmful.jsonl")
    vec = load_vector(out / "vectors" / f"{NAME}-post.safetensors")
    torch.testing.assert_close(vec.vectors, result.vectors["post"].vectors)
    print_concept(NAME, result, 1.0)
    printed = capsys.readouterr().out
    # the summary, the probe table's title and header, a row per layer
    assert f"Per layer, the {NAME} probes" in printed and "base acc" in printed
    assert len(printed.splitlines()) == 3 + len(result.layers)


def test_group_split_keeps_every_group_on_one_side():
    rng = np.random.default_rng(0)
    texts, labels, meta = [], [], []
    for g in range(30):  # paired groups (one of each class), class-pure groups, and rows with no group
        for k in ((0, 1) if g < 20 else (g % 2,) * 3):
            texts.append(f"prompt {len(texts)}")
            labels.append(k)
            meta.append({"group": f"g{g}"})
    for i in range(10):
        texts.append(f"loose {i}")
        labels.append(int(rng.integers(2)))
        meta.append({})
    ps = PromptSet("planted", texts, labels, ("negative", "positive"), meta)
    train, test = group_split(ps, 0.25, random_state=3)
    assert sorted(train.texts + test.texts) == sorted(texts) and set(train.texts).isdisjoint(test.texts)
    groups = lambda part: {m["group"] for m in part.meta if "group" in m}  # noqa: E731
    assert groups(train).isdisjoint(groups(test))
    assert {0, 1} <= set(test.labels) and 0.15 < len(test) / len(ps) < 0.35
    assert group_split(ps, 0.25, random_state=3)[1].texts == test.texts  # deterministic


def test_validation_split_does_not_cut_groups():
    pos = PromptSet("p", [f"yes {i}" for i in range(40)], meta=[{"group": i // 2} for i in range(40)])
    neg = PromptSet("n", [f"no {i}" for i in range(40)], meta=[{"group": i // 2} for i in range(40)])
    train, test, val, _, _, grouped = _prepare("paired", pos, neg, 0.25, 0.2, 0)
    assert grouped
    group = lambda part, rows: {part.meta[i]["group"] for i in rows}  # noqa: E731
    val_rows, fit_rows = torch.nonzero(val).flatten().tolist(), torch.nonzero(~val).flatten().tolist()
    assert group(train, val_rows).isdisjoint(group(train, fit_rows))
    assert group(train, range(len(train))).isdisjoint(group(test, range(len(test))))


def test_without_groups_the_split_is_promptset_split():
    ps = PromptSet.from_classes("plain", {"negative": [f"n{i}" for i in range(20)],
                                          "positive": [f"p{i}" for i in range(20)]})
    ours, theirs = group_split(ps, 0.25, 7), ps.split(0.25, random_state=7)
    assert [p.texts for p in ours] == [p.texts for p in theirs]


@pytest.mark.parametrize("case, match", [
    ("few", "3 positive prompt"),
    ("empty", "empty"),
    ("identical", "identical"),
])
def test_degenerate_inputs_raise_before_any_activation_is_read(tmp_path, files, case, match):
    rows = _texts("organism/harmful")
    negative = files["negative"]
    if case == "few":
        positive = _write_jsonl(tmp_path / "few.jsonl", rows[:3])
    elif case == "empty":
        positive = tmp_path / "empty.jsonl"
        positive.write_text("")
    else:
        positive = negative = _write_jsonl(tmp_path / "same.jsonl", rows[:10])
    with pytest.raises(ValueError, match=match):
        concept_section(None, NAME, positive, negative)  # no pair: the check comes first


def test_a_zero_difference_of_means_reports_no_cosine(pair):
    pos, neg = load("organism/harmful", "train")[:12], load("organism/harmless", "train")[:12]
    # position 0 is BOS in every prompt: the two classes have the same mean at every layer
    result = concept_section(pair, NAME, pos, neg, position="0", max_new_tokens=0, progress=False)
    assert all(e["cosine_base_post"] is None and e["cosine_base_post_ci_low"] is None for e in result.per_layer)
    assert "zero difference of means" in result.setup["cosine undefined"]
    assert "undefined" in result.readings["summary"]


def test_factory_checks_files_and_declares_its_options(tmp_path, files, monkeypatch):
    monkeypatch.setattr(_section, "_REGISTERED", {})  # the factory builds a Section and boots nothing
    missing = tmp_path / "missing.jsonl"
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        concept(NAME, files["positive"], missing)
    empty = tmp_path / "empty.csv"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        concept(NAME, empty, files["negative"])
    with pytest.raises(ValueError, match="concept name"):
        concept("no/slash", files["positive"], files["negative"])
    section = concept(NAME, files["positive"], files["negative"])
    assert section.name == NAME and NAME not in _section._REGISTERED and NAME not in _section.BUILTIN
    assert {p.name for p in section.params} == {"site", "position", "test_size", "val_share", "steer_scale",
                                                "max_new_tokens", "batch_size", "seed"}
    assert section.options({"test_size": 0.3})["test_size"] == 0.3
    with pytest.raises(ValueError, match="takes a float"):
        section.options({"test_size": "a quarter"})
