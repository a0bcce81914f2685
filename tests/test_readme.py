"""The README stays true: every ```python block runs as written, every `python -m MODULE` it names exists, and
every file or directory it links or names in the repository is there."""
import importlib.util
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)
MODULES = sorted({m for m in re.findall(r"python -m ([\w.]+)", README) if not m.endswith(".")})  # not tools.<name>
LINKS = sorted(set(re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)))
PATHS = sorted(set(re.findall(r"`((?:ltkd_jax|configs|launch|docs|tests)/[\w./]*)`", README)))


def test_readme_has_snippets_commands_and_links():
    assert BLOCKS and "ltkd_jax.main" in MODULES and "ltkd_jax.tools.sweep" in MODULES
    assert "docs/scaling.md" in LINKS and "ltkd_jax/losses.py" in PATHS


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_snippet_runs(index):
    exec(compile(BLOCKS[index], f"README.md[python block {index}]", "exec"), {})


@pytest.mark.parametrize("module", MODULES)
def test_readme_module_exists(module):
    assert importlib.util.find_spec(module) is not None, module


@pytest.mark.parametrize("path", LINKS + PATHS)
def test_readme_path_exists(path):
    assert (ROOT / path).exists(), path
