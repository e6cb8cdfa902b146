"""scripts/playground.py: a bad steps= or lr= stops with one paragraph naming the key."""
from __future__ import annotations

import pytest

from conftest import ROOT


@pytest.mark.parametrize("arg,message", [
    ("steps=-5", "steps=-5 is not valid: it is the number of optimizer steps, an integer >= 1"),
    ("steps=2.5", "steps='2.5' is not valid: it is the number of optimizer steps, an integer >= 1"),
    ("lr=abc", "lr='abc' is not valid: it is the learning rate, a number > 0"),
    ("lr=0", "lr=0.0 is not valid: it is the learning rate, a number > 0"),
])
def test_bad_numbers_name_their_key(arg, message, tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    from playground import main

    assert main(["optim=sgd", "surface=quadratic", arg, f"out={tmp_path / 'p.png'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"Error: {message}") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "p.png").exists()
