"""Every hook is documented (Datasette's rule), and every message has both languages."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
from nabat import hookspecs
from nabat.i18n import LANGUAGES, catalog

ROOT = Path(__file__).resolve().parents[2]
PLUGINS_DOC = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
HOOKS = sorted(
    name for name, fn in vars(hookspecs).items() if callable(fn) and hasattr(fn, "nabat_spec")
)


def test_there_are_hooks():
    assert {"register_drivers", "startup", "shutdown", "plugin_error"} <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook):
    assert f"### `{hook}`" in PLUGINS_DOC, f"docs/plugins.md has no section for hook {hook}"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_docstring(hook):
    assert (getattr(hookspecs, hook).__doc__ or "").strip()


def test_no_documented_hook_is_missing_from_the_specs():
    documented = set(re.findall(r"^### `([a-z_]+)`", PLUGINS_DOC, flags=re.M))
    assert documented == set(HOOKS)


def _placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field}


def test_message_catalogs_have_the_same_keys_and_placeholders():
    base = catalog("en")
    for language in LANGUAGES:
        other = catalog(language)
        assert set(other) == set(base), f"{language} catalog keys differ from en"
        for key, text in base.items():
            assert _placeholders(other[key]) == _placeholders(text), f"{language}:{key}"
