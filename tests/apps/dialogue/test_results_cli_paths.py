"""Found in a new-user trial: piped questions with blank lines between them, and a result read from
another folder than the one it was analysed in."""
import io

import pytest
from result_samples import medical

from apps.dialogue.prompt import question_lines
from apps.dialogue.results.context import ResultError, load_context


def test_piped_questions_keep_going_past_blank_lines(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("where is the lesion?\n\nand on the CT?\n  \nhow big is it\n"))
    assert list(question_lines(None, "banner")) == ["where is the lesion?", "and on the CT?", "how big is it"]
    assert list(question_lines(["a", "", "b"], "banner")) == ["a", "b"]


def test_a_missing_study_folder_is_explained(tmp_path):
    ctx = load_context(medical(tmp_path / "rel", study="runs/med-data/studies/tes0000"))
    with pytest.raises(ResultError, match="relative path: run from the folder where it was analysed"):
        ctx.image("mr")
    ctx = load_context(medical(tmp_path / "up", study=None, uploaded_study_path="/somewhere/else"))
    with pytest.raises(ResultError, match="an uploaded result carries no study images"):
        ctx.image("ct")


def test_analyze_records_the_study_as_an_absolute_path(tmp_path, monkeypatch):
    from pathlib import Path

    import torch

    from apps.medical.analyze import analyze_study, load_model
    from apps.medical.demo_data import write_study

    torch.set_num_threads(1)
    study = Path(write_study(tmp_path, "s1", 4242, label=1, fmt="nifti")["study"])
    monkeypatch.chdir(tmp_path)
    findings = analyze_study(study.relative_to(tmp_path), tmp_path / "out", load_model(), write=False)
    assert findings["study"] == str(study.resolve())
