import pytest

import interp
from interp.cli import main


def test_collect_tiny_pair_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["collect", "--tiny", "qwen2", "--dataset", "refusal", "--format", "chat", "--site", "resid_pre",
                 "--site", "mlp_post", "--position", "-2", "--layers", "0,3", "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "random-weight tiny qwen2 pair" in printed and "class-mean distance" in printed
    for name in ("base", "post"):
        acts = interp.Activations.load(out / name)
        assert acts.layers == (0, 3) and acts.sites == ("resid_pre", "mlp_post")
        assert acts.n_samples == len(interp.datasets.load("refusal", "test"))
        assert acts.texts[0].startswith("<|im_start|>user\n") and acts.manifest["extra"]["format"] == "chat"
        assert acts.manifest["position"] == "-2"


def test_collect_errors_are_reported(tmp_path, capsys):
    assert main(["collect", "--base", str(tmp_path / "nowhere"), "--post", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["collect", "--base", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "give both base and post" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["collect", "--tiny", "llama", "--format", "yaml"])
