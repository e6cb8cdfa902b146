"""User code named by a config: the import rule, what each role may be, and the one-paragraph errors."""
from __future__ import annotations

import textwrap

import pytest

from dlcourse import usercode
from dlcourse.usercode import UserCodeError, call, locate

NETS = """
import math
import torch.nn as nn

class TinyNet(nn.Module):
    def __init__(self, input_shape, num_outputs, width=8):
        super().__init__()
        if width < 1:
            raise ValueError("width must be positive")
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.ReLU())
        self.head = nn.Linear(width, num_outputs)

    def forward(self, x):
        return self.head(self.body(x))

def linear(num_outputs, bias=True):
    return nn.Linear(4, num_outputs, bias=bias)
"""


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """A folder with the user's module, the current directory of the command."""
    (tmp_path / "labnets.py").write_text(textwrap.dedent(NETS))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    import sys
    for name in [m for m in sys.modules if m.startswith(("labnets", "brokennet", "otherlab"))]:
        del sys.modules[name]


def test_a_class_in_the_launch_directory_is_built_with_what_its_signature_names(lab):
    factory = locate("labnets.TinyNet", "model._target_", "model")
    model = call(factory, "model._target_", "labnets.TinyNet", {"width": 5},
                 {"input_shape": (1, 2, 3), "num_outputs": 4, "unused": 1})
    assert model.body[1].in_features == 6 and model.body[1].out_features == 5 and model.head.out_features == 4
    made = call(locate("labnets.linear", "model._target_", "model"), "model._target_", "labnets.linear",
                {"bias": False}, {"input_shape": (4,), "num_outputs": 3})
    assert made.out_features == 3 and made.bias is None  # only the names it has are passed


def test_a_folder_added_for_config_dir_is_importable(tmp_path, lab, monkeypatch):
    other = tmp_path / "course"
    other.mkdir()
    (other / "otherlab.py").write_text("import torch\nclass Net(torch.nn.Linear):\n    pass\n")
    monkeypatch.setattr(usercode, "_search_dirs", [])
    with pytest.raises(UserCodeError, match="there is no module 'otherlab'"):
        locate("otherlab.Net", "model._target_", "model")
    usercode.add_search_dir(other)
    assert locate("otherlab.Net", "model._target_", "model").__name__ == "Net"


@pytest.mark.parametrize("target, role", [("os.system", "model"), ("subprocess.run", "model"),
                                          ("builtins.eval", "loss"), ("shutil.rmtree", "dataset"),
                                          ("subprocess.Popen", "callback"), ("os.system", "optimizer")])
def test_standard_library_callables_are_refused_before_anything_runs(target, role):
    with pytest.raises(UserCodeError, match="refused before anything ran"):
        locate(target, f"{role}._target_", role)


def test_library_objects_that_fit_the_role_are_allowed():
    import torch
    assert locate("torch.optim.SGD", "optim._target_", "optimizer") is torch.optim.SGD
    assert locate("torch.nn.functional.cross_entropy", "loss._target_", "loss") is torch.nn.functional.cross_entropy
    assert locate("torch.nn.CrossEntropyLoss", "loss._target_", "loss") is torch.nn.CrossEntropyLoss


def test_errors_name_the_key_and_say_what_to_do(lab):
    with pytest.raises(UserCodeError) as e:
        locate("labnets.TinyCNN", "model._target_", "model")
    assert "labnets has no 'TinyCNN'. It defines: TinyNet, linear." in str(e.value)
    with pytest.raises(UserCodeError) as e:
        locate("nosuchmodule.Net", "model._target_", "model")
    assert str(lab) in str(e.value) and "Put nosuchmodule.py in one of those folders" in str(e.value)
    with pytest.raises(UserCodeError, match="objects of __main__"):
        locate("__main__.Net", "model._target_", "model")
    with pytest.raises(UserCodeError, match="must be a torch.optim.Optimizer class"):
        locate("labnets.linear", "optim._target_", "optimizer")
    factory = locate("labnets.TinyNet", "model._target_", "model")
    with pytest.raises(UserCodeError) as e:
        call(factory, "model._target_", "labnets.TinyNet", {"widht": 3}, {"input_shape": (4,), "num_outputs": 2})
    assert "takes no argument 'widht' (from model.widht). It accepts: width." in str(e.value)


def test_an_exception_inside_user_code_names_its_file_and_line(lab):
    factory = locate("labnets.TinyNet", "model._target_", "model")
    with pytest.raises(UserCodeError) as e:
        call(factory, "model._target_", "labnets.TinyNet", {"width": 0}, {"input_shape": (4,), "num_outputs": 2})
    line = next(i for i, l in enumerate(textwrap.dedent(NETS).splitlines(), 1) if "raise ValueError" in l)
    assert f"labnets.py:{line}" in str(e.value) and "width must be positive" in str(e.value)
    (lab / "brokennet.py").write_text("import torch\n\nx = 1 / 0\n")
    with pytest.raises(UserCodeError) as e:
        locate("brokennet.Net", "model._target_", "model")
    assert "brokennet.py:3" in str(e.value) and "ZeroDivisionError" in str(e.value)


def test_a_user_file_edited_in_the_same_process_is_imported_again(lab):
    import os

    first = locate("labnets.linear", "model._target_", "model")
    assert first(3).out_features == 3
    source = lab / "labnets.py"
    source.write_text(source.read_text().replace("nn.Linear(4, num_outputs", "nn.Linear(5, num_outputs"))
    os.utime(source, (source.stat().st_atime, source.stat().st_mtime + 5))  # a later edit
    again = locate("labnets.linear", "model._target_", "model")
    assert again(3).in_features == 5
