"""Every hook is documented (Datasette's rule), once, and every message has both languages.

The hooks' documentation is written once, in the docstrings of ``nabat.hookspecs``; the
"Hooks" section of ``docs/plugins.md`` is generated from them. After changing a hookspec run
``uv run python tests/core/test_docs.py`` to rewrite that section.
"""

from __future__ import annotations

import inspect
import re
import string
import sys
import textwrap
from pathlib import Path

import pytest
from nabat import hookspecs
from nabat.i18n import LANGUAGES, catalog

ROOT = Path(__file__).resolve().parents[2]
PLUGINS_MD = ROOT / "docs" / "plugins.md"
PLUGINS_DOC = PLUGINS_MD.read_text(encoding="utf-8")
SPECS = [fn for fn in vars(hookspecs).values() if callable(fn) and hasattr(fn, "nabat_spec")]
HOOKS = sorted(fn.__name__ for fn in SPECS)
BEGIN = (
    "<!-- Generated from the docstrings in core/nabat/hookspecs.py: edit them, then run"
    " `uv run python tests/core/test_docs.py`. -->"
)
END = "<!-- End of the generated hooks section. -->"


def _markdown(doc: str) -> str:
    """A reST-flavoured docstring as Markdown: ``code`` and :func:`x` become `code` and `x`;
    a paragraph ending in ``::`` introduces an indented Python block, which is fenced."""
    out: list[str] = []
    prose: list[str] = []
    block: list[str] | None = None

    def end_prose() -> None:
        out.append(re.sub(r"(?::\w+:)?``?([^`]+)``?", r"`\1`", "\n".join(prose)))
        prose.clear()

    for line in [*inspect.cleandoc(doc).splitlines(), ""]:
        if block is not None:
            if not line.strip() or line.startswith("    "):
                block.append(line)
                continue
            code = textwrap.dedent("\n".join(block)).strip("\n")
            out.append(f"```python\n{code}\n```\n")
            block = None
        if line.endswith("::"):
            prose.append(line[:-1])
            end_prose()
            out.append("")
            block = []
        else:
            prose.append(line)
    end_prose()
    return "\n".join(out).strip() + "\n"


def _signature(fn) -> str:
    annotations = dict(fn.__annotations__)
    returns = annotations.pop("return", None)
    params = ", ".join(f"{name}: {kind}" for name, kind in annotations.items())
    prefix = "async " if inspect.iscoroutinefunction(fn) else ""
    return f"{prefix}{fn.__name__}({params})" + (f" -> {returns}" if returns != "None" else "")


def hooks_section() -> str:
    """The generated part of the "Hooks" section: the module's rules, then one subsection per
    hook in the order of ``hookspecs.py``."""
    paragraphs = inspect.cleandoc(hookspecs.__doc__ or "").split("\n\n")[1:-1]
    parts = [BEGIN, "", _markdown("\n\n".join(paragraphs))]
    for fn in SPECS:
        parts += [f"### `{fn.__name__}`", "", f"`{_signature(fn)}`", "", _markdown(fn.__doc__)]
    return "\n".join([*parts, END])


def _current_section(text: str) -> str:
    start, end = text.find(BEGIN), text.find(END)
    assert 0 <= start < end, f"docs/plugins.md has lost its markers {BEGIN!r} … {END!r}"
    return text[start : end + len(END)]


def test_the_hooks_section_is_generated_from_the_hookspecs():
    assert _current_section(PLUGINS_DOC) == hooks_section(), (
        "docs/plugins.md differs from the hookspecs' docstrings: edit core/nabat/hookspecs.py"
        " and run `uv run python tests/core/test_docs.py`"
    )


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


if __name__ == "__main__":
    current = _current_section(PLUGINS_DOC)
    PLUGINS_MD.write_text(PLUGINS_DOC.replace(current, hooks_section()), encoding="utf-8")
    print(f"rewrote the hooks section of {PLUGINS_MD.relative_to(ROOT)}", file=sys.stderr)
