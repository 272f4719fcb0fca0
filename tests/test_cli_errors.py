"""One-line refusals that must come before any work is done or anything is written."""

from __future__ import annotations

import pytest
import yaml

from reflective_search.cli import main
from reflective_search.errors import ConfigError
from reflective_search.tree import Tree


def test_viz_refuses_an_output_in_a_missing_folder(tmp_path, capsys):
    tree_file = tmp_path / "t.json"
    Tree([1, 2], "prompt").to_json(str(tree_file))
    target = tmp_path / "nowhere" / "t.html"
    assert main(["viz", str(tree_file), "-o", str(target)]) == 2
    assert capsys.readouterr().err == (
        f"error: --output {target}: the folder {tmp_path / 'nowhere'} does not exist; create it or pick another path\n"
    )


def test_resume_treats_1_and_1_point_0_as_different_points(tmp_path):
    # record keys are JSON text, where 1 and 1.0 differ: the config check must agree with them
    from reflective_search.experiments.results import CONFIG_FILE, PROBLEMS_FILE, _check_same_run

    resolved = {"sweep": {"search.sampling.temperature": [1]}, "seeds": [0]}
    (tmp_path / CONFIG_FILE).write_text(yaml.safe_dump(resolved))
    (tmp_path / PROBLEMS_FILE).write_text("{}\n")
    _check_same_run(tmp_path, resolved, "{}\n")  # the same config resumes
    changed = {"sweep": {"search.sampling.temperature": [1.0]}, "seeds": [0]}
    with pytest.raises(ConfigError, match="holds a run of a different config"):
        _check_same_run(tmp_path, changed, "{}\n")


@pytest.mark.parametrize("command", [
    ["train", "policy", "--steps", "1"],
    ["train", "sprm", "--model", "no-such-model"],
    ["evaluate", "calibrate", "--problems", "1"],
])
def test_an_output_folder_that_cannot_be_made_is_refused_before_any_work(tmp_path, capsys, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "out"
    assert main([*command, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out {out}: cannot create the folder (") and err.count("\n") == 1
    assert blocker.read_text() == "not a folder"


def test_train_sprm_refuses_a_trajectories_file_in_a_missing_folder(tmp_path, capsys):
    target = tmp_path / "nowhere" / "t.jsonl"
    assert main(["train", "sprm", "--model", "no-such-model", "--out", str(tmp_path / "o"),
                 "--trajectories", str(target)]) == 2
    assert capsys.readouterr().err == (f"error: --trajectories {target}: the folder {tmp_path / 'nowhere'} does "
                                       f"not exist; create it or pick another path\n")
