"""
Config overrides for the training scripts, after nanoGPT's configurator.py.

A script defines its defaults as plain module globals, then calls
    apply_config(globals(), sys.argv[1:])
(a training script: config, overridden = script_config(globals(), sys.argv[1:])).
Each argument is either a config file (Python assignments, e.g.
config/train_foo.py) or --key=value. Unlike nanoGPT's exec'd configurator,
every key must already exist and every value must fit its default's type, so
a typo stops the run with one line on stderr instead of being ignored.
"""
import ast
import os
import sys
import types


def _fail(message: str):
    # errors.fail's line, written here so that configurator imports nothing of the project
    # (the data scripts use it too): one line on stderr, exit status 2
    print("config error: " + " ".join(message.split()), file=sys.stderr)
    sys.exit(2)


def _fits(value, default) -> bool:
    # bool is a subclass of int, so it has to be ruled out explicitly:
    # --compile=1 or --max_iters=True are almost certainly mistakes.
    if default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (tuple, list)):
        return isinstance(value, (tuple, list))
    return type(value) is type(default)


def _checked(config: dict, key: str, value, source: str, where: str = ""):
    if key not in config:
        _fail(f"unknown key {key!r} (from {source})")
    default = config[key]
    if not _fits(value, default):
        _fail(f"key {key!r} expects {type(default).__name__}, "
              f"got {type(value).__name__} ({value!r}){where}")
    if isinstance(default, (float, tuple, list)):
        # keep the default's type, so betas stays a tuple and lr a float
        return type(default)(value)
    return value


def read_config_file(path: str) -> dict:
    """The assignments of a config file, unchecked; exits with status 2 if it fails."""
    if not os.path.isfile(path):
        _fail(f"config file {path!r} not found")
    namespace = {}
    try:
        with open(path) as f:
            exec(compile(f.read(), path, "exec"), namespace)
    except Exception as e:
        _fail(f"config file {path!r} failed: {type(e).__name__}: {e}")
    return {name: value for name, value in namespace.items()
            if not name.startswith("_") and not isinstance(value, types.ModuleType)}


def _parse_value(text: str, default):
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    # a str key takes the text as written, so --wandb_run_name=2024 is a name
    if isinstance(default, str) and not isinstance(value, str):
        return text
    return value


def apply_config(config: dict, argv: list[str]) -> list[str]:
    """Apply config files and --key=value overrides from argv to config.

    Arguments are applied in order, later ones winning. Nothing is written
    unless every argument is valid; on any error one line goes to stderr and
    the process exits with status 2. Returns the overridden keys in order: every
    key given, also one given its default value or an empty string, so a script
    can tell --expr= (given, empty) from no --expr at all.
    """
    overrides = {}
    for arg in argv:
        if arg.startswith("--"):
            if "=" not in arg:
                _fail(f"expected --key=value, got {arg!r}")
            key, text = arg[2:].split("=", 1)
            value = _parse_value(text, config.get(key))
            overrides[key] = _checked(config, key, value, arg)
        elif "=" in arg:
            _fail(f"expected --key=value or a config file path, got {arg!r}")
        else:
            where = f" in config file {arg!r}"
            for key, value in read_config_file(arg).items():
                overrides[key] = _checked(config, key, value, arg, where)
    for key, value in overrides.items():
        print(f"Overriding: {key} = {value}")
        config[key] = value
    return list(overrides)


def script_config(namespace: dict, argv: list[str]) -> tuple[dict, list[str]]:
    """A training script's config: the settings among its globals (namespace) with
    argv's overrides applied, also written back to namespace; and the overridden keys.
    The overrides go through a dict of the settings only (plain values), so --torch=1
    is an unknown key rather than a type error, and nothing else can be overwritten."""
    config = {k: v for k, v in namespace.items() if not k.startswith("_") and isinstance(v, (int, float, bool, str))}
    overridden = apply_config(config, argv)
    namespace.update(config)
    return config, overridden
