"""Tests for configurator.apply_config and script_config: overrides, type checks and one-line errors."""
import os
import subprocess
import sys
import textwrap

import pytest

from configurator import apply_config, script_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def defaults() -> dict:
    return {
        "out_dir": "out",
        "device": "cpu",
        "max_iters": 100,
        "learning_rate": 6e-4,
        "compile": True,
        "betas": (0.9, 0.95),
        "layers": [1, 2],
        "init_seed": None,
    }


def expect_error(capsys, config: dict, argv: list[str]) -> str:
    before = dict(config)
    with pytest.raises(SystemExit) as exc:
        apply_config(config, argv)
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.endswith("\n")
    assert err.startswith("config error: ")
    assert config == before
    return err.strip()


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_no_arguments_changes_nothing(capsys):
    config = defaults()
    assert apply_config(config, []) == []
    assert config == defaults()
    assert capsys.readouterr() == ("", "")


def test_cli_overrides_and_prints_one_line_per_key(capsys):
    config = defaults()
    changed = apply_config(config, ["--max_iters=5", "--learning_rate=1e-3", "--compile=False"])
    assert changed == ["max_iters", "learning_rate", "compile"]
    assert config["max_iters"] == 5
    assert config["learning_rate"] == 1e-3
    assert config["compile"] is False
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "Overriding: max_iters = 5",
        "Overriding: learning_rate = 0.001",
        "Overriding: compile = False",
    ]
    assert err == ""


def test_raw_string_fallback():
    config = defaults()
    apply_config(config, ["--out_dir=out-x", "--device=cuda"])
    assert config["out_dir"] == "out-x"
    assert config["device"] == "cuda"


def test_str_key_takes_text_as_written():
    config = defaults()
    apply_config(config, ["--out_dir=2024", "--device='cuda:1'"])
    assert config["out_dir"] == "2024"
    assert config["device"] == "cuda:1"


def test_int_accepted_for_float_and_converted():
    config = defaults()
    apply_config(config, ["--learning_rate=1"])
    assert config["learning_rate"] == 1.0
    assert type(config["learning_rate"]) is float


def test_none_default_accepts_anything():
    for text, value in [("3", 3), ("abc", "abc"), ("(1, 2)", (1, 2)), ("None", None)]:
        config = defaults()
        apply_config(config, [f"--init_seed={text}"])
        assert config["init_seed"] == value


def test_tuple_and_list_defaults_accept_either_and_keep_their_type():
    config = defaults()
    apply_config(config, ["--betas=[0.8, 0.99]", "--layers=(3, 4, 5)"])
    assert config["betas"] == (0.8, 0.99)
    assert config["layers"] == [3, 4, 5]


def test_keys_given_empty_or_at_their_default_are_reported():
    # evaluate.py tells --expr= (given, empty) from no --expr this way
    config = defaults()
    assert apply_config(config, ["--out_dir=", "--max_iters=100"]) == ["out_dir", "max_iters"]
    assert config["out_dir"] == "" and config["max_iters"] == 100


def test_later_arguments_win_and_key_is_reported_once():
    config = defaults()
    assert apply_config(config, ["--max_iters=5", "--max_iters=7"]) == ["max_iters"]
    assert config["max_iters"] == 7


@pytest.mark.parametrize("arg, message", [
    ("--max_iters=1.5", "key 'max_iters' expects int, got float (1.5)"),
    ("--max_iters=True", "key 'max_iters' expects int, got bool (True)"),
    ("--max_iters=abc", "key 'max_iters' expects int, got str ('abc')"),
    ("--compile=1", "key 'compile' expects bool, got int (1)"),
    ("--compile=0", "key 'compile' expects bool, got int (0)"),
    ("--compile=yes", "key 'compile' expects bool, got str ('yes')"),
    ("--learning_rate=True", "key 'learning_rate' expects float, got bool (True)"),
    ("--learning_rate=fast", "key 'learning_rate' expects float, got str ('fast')"),
    ("--betas=0.9", "key 'betas' expects tuple, got float (0.9)"),
    ("--layers={1: 2}", "key 'layers' expects list, got dict ({1: 2})"),
])
def test_type_errors(capsys, arg, message):
    assert expect_error(capsys, defaults(), [arg]) == f"config error: {message}"


def test_unknown_key(capsys):
    err = expect_error(capsys, defaults(), ["--foo=1"])
    assert err == "config error: unknown key 'foo' (from --foo=1)"


def test_bare_flag_is_an_error(capsys):
    err = expect_error(capsys, defaults(), ["--compile"])
    assert err == "config error: expected --key=value, got '--compile'"


def test_assignment_without_dashes_is_an_error(capsys):
    err = expect_error(capsys, defaults(), ["max_iters=5"])
    assert "'max_iters=5'" in err


def test_error_leaves_config_untouched_and_prints_no_overrides(capsys):
    config = defaults()
    expect_error(capsys, config, ["--max_iters=5", "--foo=1"])
    assert config["max_iters"] == 100


def test_config_file_overrides(tmp_path, capsys):
    path = write(tmp_path, "cfg.py", """\
        import math
        _scale = 2
        max_iters = 10 * _scale
        learning_rate = 3
        out_dir = 'out-file'
        betas = [0.5, math.sqrt(0.25)]
    """)
    config = defaults()
    changed = apply_config(config, [path])
    assert changed == ["max_iters", "learning_rate", "out_dir", "betas"]
    assert config["max_iters"] == 20
    assert config["learning_rate"] == 3.0 and type(config["learning_rate"]) is float
    assert config["out_dir"] == "out-file"
    assert config["betas"] == (0.5, 0.5)
    out, _ = capsys.readouterr()
    assert out.splitlines() == [
        "Overriding: max_iters = 20",
        "Overriding: learning_rate = 3.0",
        "Overriding: out_dir = out-file",
        "Overriding: betas = (0.5, 0.5)",
    ]


def test_cli_after_config_file_wins(tmp_path):
    path = write(tmp_path, "cfg.py", "max_iters = 10\n")
    config = defaults()
    apply_config(config, [path, "--max_iters=30"])
    assert config["max_iters"] == 30


def test_config_file_unknown_key(tmp_path, capsys):
    path = write(tmp_path, "cfg.py", "max_iter = 10\n")
    err = expect_error(capsys, defaults(), [path])
    assert err == f"config error: unknown key 'max_iter' (from {path})"


def test_config_file_type_error(tmp_path, capsys):
    path = write(tmp_path, "cfg.py", "max_iters = 1.5\n")
    err = expect_error(capsys, defaults(), [path])
    assert err == (f"config error: key 'max_iters' expects int, got float (1.5)"
                   f" in config file {path!r}")


def test_config_file_not_found(tmp_path, capsys):
    path = str(tmp_path / "x.py")
    err = expect_error(capsys, defaults(), [path])
    assert err == f"config error: config file {path!r} not found"


@pytest.mark.parametrize("text", ["max_iters = \n", "max_iters = undefined_name\n"])
def test_broken_config_file(tmp_path, capsys, text):
    path = write(tmp_path, "cfg.py", text)
    err = expect_error(capsys, defaults(), [path])
    assert err.startswith(f"config error: config file {path!r} failed: ")


def test_script_exits_2_with_one_line_on_stderr(tmp_path):
    script = write(tmp_path, "train.py", """\
        import sys
        from configurator import apply_config
        max_iters = 100
        apply_config(globals(), sys.argv[1:])
        print('trained', max_iters)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, script, "--max_iter=5"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == ["config error: unknown key 'max_iter' (from --max_iter=5)"]
    assert "Traceback" not in result.stderr

    result = subprocess.run([sys.executable, script, "--max_iters=5"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0
    assert result.stdout.splitlines() == ["Overriding: max_iters = 5", "trained 5"]


def test_script_config_overrides_only_plain_settings_and_writes_them_back(capsys):
    namespace = {"max_iters": 100, "out_dir": "out", "_private": 1, "torch": os, "limits": (1, 2)}
    config, overridden = script_config(namespace, ["--max_iters=7", "--out_dir=out"])
    assert config == {"max_iters": 7, "out_dir": "out"}  # modules, tuples and _names are no settings
    assert overridden == ["max_iters", "out_dir"]
    assert namespace["max_iters"] == 7 and namespace["torch"] is os and namespace["limits"] == (1, 2)
    capsys.readouterr()
    for arg in ("--torch=1", "--limits=(3, 4)", "--_private=2"):
        with pytest.raises(SystemExit) as exc:
            script_config(namespace, [arg])
        assert exc.value.code == 2
        assert capsys.readouterr().err == f"config error: unknown key '{arg[2:].split('=')[0]}' (from {arg})\n"
    assert namespace["torch"] is os and namespace["max_iters"] == 7
