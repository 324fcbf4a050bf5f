"""A job's output that cannot be a folder (a file, or a path under one; an S3 object) is one line naming it, exit
2, before any work: not Ray's wrapper of an actor's failure after the work (pack, synth), nor a failure after a
whole evaluation."""

import subprocess
import sys

import pytest

from fsnet.config import load_config
from fsnet.errors import StorageError
from fsnet.storage import Storage


def test_a_file_or_a_path_under_one_is_refused_and_a_new_folder_is_made(location):
    storage = Storage(load_config([], location.sets).storage)
    storage.write_text(location.url("afile"), "not a folder")
    with pytest.raises(StorageError, match=r"^--out .*afile: (is a file|an object), not a folder"):
        storage.check_output_folder(location.url("afile"))
    if location.kind == "local":
        with pytest.raises(StorageError, match=r"afile/run: is under the file .*afile, not a folder"):
            storage.check_output_folder(location.url("afile/run"))
    storage.check_output_folder(location.url("new/run"))  # a folder that does not exist yet is fine: and it is
    assert not storage.exists(location.url("new"))  # not made by the check (a job that fails later writes nothing)


@pytest.mark.parametrize(
    "command",
    [
        ["pack", "--config", "synthetic", "--source", "SRC", "--out", "OUT"],
        ["synth", "--n", "4", "--out", "OUT"],
        ["report", "RESULTS", "--out", "OUT"],
    ],
)
def test_commands_say_so_in_one_line_before_any_work(tmp_path, command):
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "src").mkdir()
    (tmp_path / "results.json").write_text("{}")
    args = [
        {"SRC": str(tmp_path / "src"), "OUT": str(tmp_path / "afile"), "RESULTS": str(tmp_path / "results.json")}.get(
            a, a
        )
        for a in command
    ]
    done = subprocess.run([sys.executable, "-m", f"jobs.{args[0]}", *args[1:]], capture_output=True, text=True)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert f"--out {tmp_path / 'afile'}: is a file, not a folder" in lines[0]
