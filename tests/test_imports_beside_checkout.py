"""A command run beside a folder named like one of fsnet's packages (the checkout itself, cloned as ``fsnet``): Ray
puts the driver's working directory first on every worker's sys.path, where that folder would be imported as an
empty namespace package. Importing ``jobs`` (what every driver and Ray worker of fsnet does first) keeps the
project's own packages."""

import subprocess
import sys
import textwrap


def test_a_folder_named_fsnet_in_the_working_directory_does_not_shadow_the_package(tmp_path):
    (tmp_path / "fsnet" / "jobs").mkdir(parents=True)  # a checkout named fsnet: no __init__.py at its top
    (tmp_path / "eval" / "shop").mkdir(parents=True)  # `fsnet evaluate --out eval/shop` run here before
    script = textwrap.dedent(
        """
        import sys
        sys.path.insert(0, "")  # as Ray does in a worker: the driver's working directory first
        import fsnet  # a worker may unpickle a class of fsnet's before it imports jobs
        assert getattr(fsnet, "__file__", None) is None, "the folder shadows the package (the case tested)"
        import jobs
        sys.path.insert(0, "")  # and again before each task
        import eval
        import fsnet
        from fsnet.model import checkpoint
        assert eval.__file__ and not eval.__file__.startswith(sys.argv[1])
        print(fsnet.__version__, checkpoint.fsnet.__version__)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    version = done.stdout.split()
    assert len(version) == 2 and version[0] == version[1]
