"""Properties of the JSONL readers (problems files, trajectories files) on generated files.

Any bytes either load or give one error line naming the file (and the line, when one line
is at fault); records written out read back exactly, whatever their text holds.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from reflective_search.errors import ProblemError
from reflective_search.experiments.problems import TASKS, read_jsonl_problems
from reflective_search.train.sprm import Trajectory, read_trajectory_records, save_trajectories
from reflective_search.train.tasks import TrainingProblem, read_problem_file

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                       max_size=3), max_leaves=6)
# Objects that look like records: the fields readers look for, with any values, plus others.
record_like = st.dictionaries(st.sampled_from(["problem", "answer", "id", "response", "correct", "other"]), json_values,
                              max_size=5)
lines = st.one_of(record_like.map(json.dumps), json_values.map(json.dumps), st.text(max_size=20), st.just(""))
line_files = st.lists(lines, max_size=5).map(lambda ls: "\n".join(ls).encode("utf-8"))
texts = st.text(min_size=1, max_size=30).filter(str.strip)  # any unicode: line and paragraph separators included


def temporary_file(data: bytes) -> Path:
    path = Path(tempfile.mkdtemp(prefix="jsonl-property-")) / "data.jsonl"
    path.write_bytes(data)
    return path


def assert_one_line_about(error: ProblemError, path: Path, data: bytes) -> None:
    message = str(error)
    assert "\n" not in message and str(path) in message, message
    if (at := re.search(rf"{re.escape(str(path))}(?: line |:)(\d+):", message)) is not None:
        line = data.split(b"\n")[int(at[1]) - 1]  # the line named is one that holds something
        assert line.strip(), (message, line)


@example(b'{"problem": "a", "answer": 1}\r\n{"problem":\r"b", "answer": 2}\n', "math")  # CRLF; a lone CR is space
@example(b"\xff\xfe", "math")
@example(b'{"problem": "1+1", "answer": 2}\n{"problem": "1+1", "answer": 2, "id": 0}', "math")
@given(st.binary(max_size=80) | line_files, st.sampled_from(sorted(TASKS)))
def test_any_problems_file_loads_or_is_one_line_naming_the_file_and_line(data, task):
    path = temporary_file(data)
    try:
        problems = read_jsonl_problems(path, TASKS[task])
    except ProblemError as error:
        assert_one_line_about(error, path, data)
    else:
        ids = [problem.problem_id for problem in problems]
        assert problems and len(set(map(repr, ids))) == len(ids)


@example([{"problem": "one\u2028two\x85three\x1cfour", "answer": 1}], False)  # not line breaks in JSONL
@given(st.lists(st.fixed_dictionaries({"problem": texts, "answer": st.integers() | texts}), min_size=1, max_size=5),
       st.booleans())
def test_problem_records_read_back_exactly_whatever_their_text(records, ascii_only):
    data = "".join(json.dumps(record, ensure_ascii=ascii_only) + "\n" for record in records).encode("utf-8")
    problems = read_jsonl_problems(temporary_file(data), TASKS["math"])
    assert [(p.problem_id, p.text, p.record) for p in problems] == [(i, r["problem"], r) for i, r in enumerate(records)]
    training = read_problem_file(temporary_file(data), "answer")
    assert training == [TrainingProblem(r["problem"], str(r["answer"])) for r in records]


@example(b'{"problem": "a", "answer": 1}\r\n{"problem":\r"b", "answer": 2}\n', "answer")
@example(b"\r0\n", None)  # line 2 in a reader that took the lone CR for a line break
@example(b"\xff", None)
@given(st.binary(max_size=80) | line_files, st.sampled_from([None, "answer", "solution"]))
def test_any_training_problems_file_loads_or_is_one_line_naming_the_file_and_line(data, need):
    path = temporary_file(data)
    try:
        problems = read_problem_file(path, need)
    except ProblemError as error:
        assert_one_line_about(error, path, data)
    else:
        assert problems and all(p.text.strip() and (need is None or getattr(p, need)) for p in problems)


@example(b'{"problem": "p", "response": "r",\r"correct": true}\r\n')
@example(b'{"problem": "p", "response": "r", "correct": 1}')
@example(b'{"problem": "p", "response": "r", "correct": true, "answer": [1]}')
@given(st.binary(max_size=80) | line_files)
def test_any_trajectories_file_loads_or_is_one_line_naming_the_file_and_line(data):
    path = temporary_file(data)
    try:
        records = read_trajectory_records(path)
    except ProblemError as error:
        assert_one_line_about(error, path, data)
    else:
        assert records and all(isinstance(correct, bool) for _, _, correct in records)


trajectories = st.builds(lambda text, answer, response, correct: Trajectory(TrainingProblem(text, answer), (), (),
                                                                            response, correct),
                         texts, st.none() | texts, st.text(max_size=30), st.booleans())


@example([Trajectory(TrainingProblem("a\u2029b"), (), (), "c\rd\x0be", True)])
@given(st.lists(trajectories, min_size=1, max_size=5))
def test_saved_trajectories_read_back_exactly_and_leave_no_partial_file(saved):
    path = Path(tempfile.mkdtemp(prefix="trajectories-property-")) / "t.jsonl"
    save_trajectories(saved, path)
    assert read_trajectory_records(path) == [(t.problem, t.response, t.correct) for t in saved]
    assert sorted(p.name for p in path.parent.iterdir()) == ["t.jsonl"]


def test_lines_end_at_newline_only_so_a_lone_carriage_return_is_json_whitespace():
    data = b'{"problem": "a", "answer": 1}\r\n{"problem":\r"b", "answer": 2, "response": "r",\r"correct": true}\n'
    assert [p.text for p in read_jsonl_problems(temporary_file(data), TASKS["math"])] == ["a", "b"]
    assert [p.text for p in read_problem_file(temporary_file(data), "answer")] == ["a", "b"]
    assert [problem.text for problem, _, _ in read_trajectory_records(temporary_file(data.split(b"\r\n")[1]))] == ["b"]
