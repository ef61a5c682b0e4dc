"""Nothing finished is lost: each section's result is written as it finishes, Ctrl-C says what was kept, and a
rerun of the same configuration into the same folder resumes from the finished sections."""

from __future__ import annotations

import json

import pytest
import torch

import interp
from interp.compare import Interrupted, Param, Section, compare, register
from interp.compare import _section
from interp.datasets import load
from interp.report import Comparison, ConceptResult

CALLS: list[str] = []
STOP = {"at": None}


def _run(name):
    def run(ctx, scale: float = 1.0):
        CALLS.append(name)
        if STOP["at"] == name:
            raise KeyboardInterrupt
        n = ctx.pair.base.cfg.n_layers
        load("organism/truth", "test")  # a prompt set the manifest lists under this section
        return ConceptResult(name, list(range(n)), [{"layer": i, "value": scale * (i + 1)} for i in range(n)],
                             readings={"summary": f"{name} at scale {scale}"})
    return run


@pytest.fixture(scope="module")
def pair():
    return interp.load_pair()


@pytest.fixture
def sections():
    names = ("resume_a", "resume_b", "resume_c")
    for name in names:
        register(Section(name, _run(name), (Param("scale", float, 1.0, "a multiplier"),), "a test section"),
                 replace=True)
    CALLS.clear()
    STOP["at"] = None
    yield list(names)
    for name in names:
        _section._REGISTERED.pop(name, None)


def test_ctrl_c_keeps_finished_sections_and_a_rerun_resumes_from_them(pair, sections, tmp_path):
    out = tmp_path / "report"
    STOP["at"] = "resume_b"
    with pytest.raises(Interrupted) as err:
        compare(pair=pair, concepts=sections, out=out, progress=False)
    assert isinstance(err.value, KeyboardInterrupt)
    assert err.value.section == "resume_b" and err.value.kept == ["resume_a"] and err.value.out == out
    assert "kept resume_a in" in str(err.value) and "run the same command again to resume" in str(err.value)
    assert "(report.html shows it)" in str(err.value)  # one section kept
    assert (out / "config.toml").is_file()  # the configuration to run again is there already
    # the folder is a valid report of the finished section, and says what was still to run
    kept = Comparison.load(out)
    assert list(kept.concepts) == ["resume_a"] and kept.manifest["incomplete"] == ["resume_b", "resume_c"]
    assert "resume_a" in (out / "report.html").read_text()
    assert set(json.loads((out / "resume.json").read_text())["sections"]) == {"resume_a"}

    STOP["at"] = None
    CALLS.clear()
    resumed = compare(pair=pair, concepts=sections, out=out, progress=False)
    assert CALLS == ["resume_b", "resume_c"]  # resume_a was not run again
    assert resumed.manifest["resumed"] == ["resume_a"] and "incomplete" not in resumed.manifest
    # the resumed section's prompt sets stay in the manifest, as an uninterrupted run lists them
    listed = lambda m: sorted((e["section"], e["name"], e["split"]) for e in m["datasets"])  # noqa: E731
    assert resumed.timings["resume_a"] == kept.timings["resume_a"]
    CALLS.clear()
    whole = compare(pair=pair, concepts=sections, out=tmp_path / "fresh", progress=False)
    assert CALLS == sections
    assert resumed.concepts == whole.concepts  # resuming gives what one uninterrupted run gives
    assert listed(resumed.manifest) == listed(whole.manifest) and ("resume_a", "organism/truth/test", "test") in listed(
        resumed.manifest)
    assert Comparison.load(out).concepts == whole.concepts


def test_a_changed_option_code_or_fresh_runs_a_section_again(pair, sections, tmp_path, monkeypatch):
    import interp.compare as cmp

    out = tmp_path / "report"
    compare(pair=pair, concepts=sections[:2], out=out, progress=False)
    CALLS.clear()
    result = compare(pair=pair, concepts=sections[:2], out=out, progress=False, options={"resume_b": {"scale": 2.0}})
    assert CALLS == ["resume_b"] and result.concepts["resume_b"].per_layer[0]["value"] == 2.0
    CALLS.clear()
    compare(pair=pair, concepts=sections[:2], out=out, progress=False, fresh=True)
    assert CALLS == sections[:2]
    CALLS.clear()
    monkeypatch.setattr(cmp, "source_digest", lambda: "other code")
    compare(pair=pair, concepts=sections[:2], out=out, progress=False)
    assert CALLS == sections[:2]


def test_ctrl_c_while_rerunning_with_other_options_keeps_the_earlier_results_until_replaced(pair, sections, tmp_path):
    """A section rerun with other options keeps its earlier result in the folder, under its earlier options, until
    the new one has finished: Ctrl-C meanwhile loses nothing, and the message says which results are earlier ones."""
    out = tmp_path / "report"
    first = compare(pair=pair, concepts=sections[:2], out=out, progress=False)
    other = {"resume_a": {"scale": 2.0}, "resume_b": {"scale": 3.0}}
    STOP["at"] = "resume_a"  # before this run finished anything: the folder is as it was
    with pytest.raises(Interrupted) as err:
        compare(pair=pair, concepts=sections[:2], out=out, progress=False, options=other)
    assert str(err.value) == (f"interrupted during the resume_a section, before this run wrote anything; {out} is as "
                              f"it was (it holds resume_a, resume_b)")
    assert Comparison.load(out).concepts == first.concepts
    STOP["at"] = "resume_b"  # resume_a replaced, resume_b not yet: its earlier result stays
    with pytest.raises(Interrupted) as err:
        compare(pair=pair, concepts=sections[:2], out=out, progress=False, options=other)
    assert err.value.kept == ["resume_a"] and err.value.earlier == ["resume_b"]
    assert f"kept resume_a, and resume_b from an earlier run, in {out} (report.html shows them)" in str(err.value)
    held = Comparison.load(out)
    assert held.concepts["resume_a"].per_layer[0]["value"] == 2.0
    assert held.concepts["resume_b"] == first.concepts["resume_b"]
    stored = json.loads((out / "resume.json").read_text())["sections"]
    assert stored["resume_b"]["options"] == {"scale": 1.0} and stored["resume_a"]["options"] == {"scale": 2.0}
    assert 'scale = 1.0' in (out / "config.toml").read_text().split("[options.resume_b]")[1]
    STOP["at"] = None
    CALLS.clear()
    compare(pair=pair, concepts=sections[:2], out=out, progress=False, options=other)
    assert CALLS == ["resume_b"]  # resume_a was replaced already; resume_b now is
    assert Comparison.load(out).concepts["resume_b"].per_layer[0]["value"] == 3.0


def test_a_damaged_resume_file_runs_every_section(pair, sections, tmp_path, caplog):
    out = tmp_path / "report"
    compare(pair=pair, concepts=sections[:1], out=out, progress=False)
    (out / "resume.json").write_text("{not json")
    CALLS.clear()
    compare(pair=pair, concepts=sections[:1], out=out, progress=False)
    assert CALLS == sections[:1] and "cannot be resumed" in caplog.text


def test_models_without_hashed_weights_are_never_resumed(pair):
    from interp.compare import section_key

    key = dict(vocab="v", template=None)
    assert section_key({"base": {"files": {}}, "post": {"files": {"m": {"sha256": "x"}}}}, "t", {}, **key) is None
    files = {"base": {"files": {"m": {"sha256": "x"}}}, "post": {"files": {"m": {"sha256": "y"}}}}
    assert section_key(files, "t", {"a": 1}, **key) == section_key(files, "t", {"a": 1}, **key)
    assert section_key(files, "t", {"a": 1}, **key) != section_key(files, "t", {"a": 2}, **key)
    other = {"base": files["base"], "post": {"files": {"m": {"sha256": "z"}}}}
    assert section_key(files, "t", {"a": 1}, **key) != section_key(other, "t", {"a": 1}, **key)


def test_the_cli_prints_each_section_as_it_finishes_and_ctrl_c_without_a_traceback(pair, sections, tmp_path,
                                                                                  capsys, monkeypatch):
    from interp.cli import main

    out = str(tmp_path / "report")
    STOP["at"] = "resume_b"
    assert main(["compare", "--concepts", ",".join(sections), "--out", out, "-q"]) == 130
    captured = capsys.readouterr()
    assert "resume_a (" in captured.out and "resume_a at scale 1.0" in captured.out  # printed when it finished
    assert "interrupted during the resume_b section; kept resume_a in" in captured.err
    assert "Traceback" not in captured.err
    STOP["at"] = None
    assert main(["compare", "--concepts", ",".join(sections), "--out", out, "-q"]) == 0
    printed = capsys.readouterr().out
    assert "resume_a (0 s, from the earlier run in this folder)" in printed
    assert "(taken from the earlier run)" in printed


def test_a_rerun_naming_fewer_sections_keeps_the_others(pair, sections, tmp_path, caplog):
    """Rerunning one section into a report folder keeps the folder's other finished sections (same configuration:
    their options come from resume.json), so nothing finished is lost; fresh replaces the report; a section from
    other code is not kept."""
    import interp.compare as cmp
    from interp.compare import load_config

    out = tmp_path / "report"
    compare(pair=pair, concepts=sections, out=out, progress=False, options={"resume_c": {"scale": 3.0}})
    CALLS.clear()
    result = compare(pair=pair, concepts=["resume_b"], out=out, progress=False, options={"resume_b": {"scale": 2.0}})
    assert CALLS == ["resume_b"]  # only the named section ran
    assert list(result.concepts) == ["resume_a", "resume_b", "resume_c"]  # the folder's order: interp diff sees none
    assert result.concepts["resume_b"].per_layer[0]["value"] == 2.0
    assert result.concepts["resume_c"].per_layer[0]["value"] == 3.0  # kept with the options it ran with
    assert result.manifest["resumed"] == ["resume_a", "resume_c"] and "keeping resume_a, resume_c" in caplog.text
    assert list(Comparison.load(out).concepts) == ["resume_a", "resume_b", "resume_c"]
    config = load_config(out / "config.toml")  # reproduces the whole report, kept sections included
    assert config["concepts"] == ["resume_a", "resume_b", "resume_c"]
    assert config["options"]["resume_c"] == {"scale": 3.0} and config["options"]["resume_b"] == {"scale": 2.0}
    assert set(json.loads((out / "resume.json").read_text())["sections"]) == {"resume_a", "resume_b", "resume_c"}

    CALLS.clear()  # a rerun of the kept report's own configuration runs nothing
    again = compare(pair=pair, concepts=config["concepts"], out=out, progress=False, options=config["options"])
    assert CALLS == [] and again.concepts == result.concepts

    cmp.source_digest.cache_clear()
    real = cmp.source_digest
    try:  # other code: the kept sections' keys no longer match, so they are dropped (and said so)
        cmp.source_digest = lambda: "other code"
        CALLS.clear()
        assert list(compare(pair=pair, concepts=["resume_a"], out=out, progress=False).concepts) == ["resume_a"]
        assert CALLS == ["resume_a"] and "resume_b, resume_c in" in caplog.text and "not kept" in caplog.text
    finally:
        cmp.source_digest = real
    compare(pair=pair, concepts=sections, out=out, progress=False)
    assert list(compare(pair=pair, concepts=["resume_a"], out=out, progress=False, fresh=True).concepts) == [
        "resume_a"]  # fresh: the report holds this run's sections only


@pytest.mark.parametrize("at", ["between sections", "at the end"])
def test_ctrl_c_while_the_report_is_written_waits_until_it_is_whole(pair, sections, tmp_path, monkeypatch, at):
    """Ctrl-C as the folder is being written (here: as write_report starts) lets the write finish, then stops the
    run: the folder is a whole report of the finished sections, never layers.csv without report.json."""
    import os
    import signal

    import interp.compare as cmp

    real, calls = cmp.write_report, []

    def write_report(comparison, out):
        calls.append(list(comparison.concepts))
        if at == "at the end" and len(comparison.concepts) < 3:
            return real(comparison, out)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, delivered while the files are written
        return real(comparison, out)

    monkeypatch.setattr(cmp, "write_report", write_report)
    out = tmp_path / "report"
    with pytest.raises(Interrupted) as err:
        compare(pair=pair, concepts=sections, out=out, progress=False)
    want = ["resume_a"] if at == "between sections" else sections
    assert calls[-1] == want and err.value.kept == want
    assert err.value.section == ("resume_b" if at == "between sections" else None)
    assert list(Comparison.load(out).concepts) == want  # report.json written, and it indexes the rest
    assert set(json.loads((out / "resume.json").read_text())["sections"]) == set(want)
    assert (out / "config.toml").is_file() and (out / "layers.csv").is_file()
    if at == "at the end":
        assert "the report in" in str(err.value) and "is whole" in str(err.value)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is restored


def test_ctrl_c_while_the_pair_loads_says_so(monkeypatch, tmp_path, capsys):
    import interp.compare as cmp
    from interp.cli import main

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cmp, "load_pair", stopped)
    assert main(["compare", "--concepts", "truth", "--out", str(tmp_path / "r"), "-q"]) == 130
    err = capsys.readouterr().err
    assert "interrupted while the pair was loading, before any section ran; nothing was written" in err
    assert "Traceback" not in err and not (tmp_path / "r").exists()


def test_ctrl_c_as_the_last_section_ends_keeps_its_result(pair, sections, tmp_path, monkeypatch):
    """A SIGINT that arrives after the last section returned and before its result is written waits for the write:
    the new result is kept and the message says the report is whole."""
    import os
    import signal

    import interp.compare as cmp

    out = tmp_path / "report"
    compare(pair=pair, concepts=sections[:2], out=out, progress=False)
    bind = cmp.bind_vectors

    def interrupted_bind(result, pair):  # runs right after a section returns, before its result is written
        if result.concept == "resume_b":
            os.kill(os.getpid(), signal.SIGINT)
        bind(result, pair)

    monkeypatch.setattr(cmp, "bind_vectors", interrupted_bind)
    with pytest.raises(Interrupted) as err:
        compare(pair=pair, concepts=sections[:2], out=out, progress=False, options={"resume_b": {"scale": 5.0}})
    assert str(err.value).startswith(f"interrupted as the run ended; the report in {out} is whole")
    assert Comparison.load(out).concepts["resume_b"].per_layer[0]["value"] == 5.0


def test_ctrl_c_while_a_finished_sections_table_prints_keeps_it(pair, sections, tmp_path):
    """Ctrl-C in on_section (the CLI printing a finished section's table) comes after that section was written: it
    is kept, and the message says what runs next."""
    out = tmp_path / "report"

    def printing(name, *_):
        if name == "resume_a":
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as err:
        compare(pair=pair, concepts=sections, out=out, progress=False, on_section=printing)
    assert err.value.kept == ["resume_a"] and err.value.section == "resume_b"
    assert list(Comparison.load(out).concepts) == ["resume_a"]


def test_ctrl_c_before_any_section_and_after_the_report_is_said_without_a_traceback(monkeypatch, tmp_path, capsys):
    """Ctrl-C while the command line is read (the sections' modules import), before compare's first section, or
    while the closing lines print: exit 130, one line saying what was written, no traceback."""
    import interp.cli as cli
    import interp.compare as cmp

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    out = str(tmp_path / "r")
    for target, name, said in ((cli, "_parser", "interp: interrupted before the command started; nothing was written"),
                               (cmp, "compare", "interp compare: interrupted before any section ran; nothing was "
                                                "written"),
                               (cli, "_print_run", f"interp compare: interrupted after the report was written to "
                                                   f"{out}")):
        with monkeypatch.context() as m:
            m.setattr(target, name, stopped)
            if name == "_print_run":
                m.setattr(cmp, "compare", lambda *a, **k: None)
            assert cli.main(["compare", "--concepts", "truth", "--out", out, "-q"]) == 130, name
        err = capsys.readouterr().err
        assert said in err and "Traceback" not in err, name


def test_the_steering_vectors_line_lists_the_reports_own(tmp_path, capsys):
    """`interp compare`'s closing lines name the vectors the report holds, not a user's own files in vectors/."""
    from interp.cli import _print_run
    from interp.report import ConceptResult, vector_file
    from steering import SteeringVector

    (tmp_path / "vectors").mkdir()
    (tmp_path / "vectors" / "mine.safetensors").write_bytes(b"")
    vec = SteeringVector(torch.ones(1, 4), (1,), "resid_pre")
    result = Comparison(pair={}, concepts={"refusal": ConceptResult("refusal", [0], [{"layer": 0}],
                                                                    vectors={"post": vec})},
                        timings={"load": 1.0, "refusal": 2.0})
    _print_run(result, tmp_path)
    printed = capsys.readouterr().out
    assert f"steering vectors: {tmp_path / 'vectors' / vector_file('refusal', 'post')}\n" in printed
    assert "mine" not in printed and vector_file("refusal", "post") == "refusal-post.safetensors"
