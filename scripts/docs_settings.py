"""The configuration page's settings table, generated from `app.settings.Settings`.

Used as an mkdocs hook (mkdocs.yml `hooks:`): the marker `<!-- settings-table -->` in
docs/configuration.md is replaced, at build time, by one row per setting: its environment variable,
type, default and description. A setting's description is its `Field(description=...)`, else the
comment block written above it in app/settings.py (a comment above a group of settings describes
each of them). `python scripts/docs_settings.py` prints the table.
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the checkout's `app`, also when mkdocs runs from elsewhere
    sys.path.insert(0, str(ROOT))

__all__ = ["MARKER", "on_page_markdown", "settings_rows", "settings_table"]

MARKER = "<!-- settings-table -->"


# Settings declared without a description or a comment in app/settings.py (add one there instead
# of here: a description in the code is the one that stays true).
FALLBACK = {
    "host": "Address `fusionrank serve` binds (it sets this from `--host`).",
    "port": "Port `fusionrank serve` binds (it sets this from `--port`).",
    "admin_tokens": (
        'Named admin API bearer tokens as JSON, `{"alice": "<secret>"}` (at least 16 characters each); '
        "the name is the audit log's `who`. With neither this nor `ADMIN_TOKEN` the admin API is off (404)."
    ),
    "max_candidates": "Most candidates in one `/v1/score` request (more: 413).",
    "max_body_bytes": "Largest `/v1/score` or `/v1/feedback` body in bytes (more: 413).",
    "log_level": (
        "Level of the `fusionrank.*` loggers (audit, watcher, registry); uvicorn's is `fusionrank serve --log-level`."
    ),
}


def _comments() -> dict[str, str]:
    """Field name -> the comment block right above it, or above the group of lines it belongs to."""
    from app import settings

    source = inspect.getsource(settings)
    lines = source.splitlines()
    cls = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "Settings")
    found: dict[str, str] = {}
    group = ""
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            group = ""
            continue
        above: list[str] = []
        i = node.lineno - 2  # 0-based index of the line above the field
        while i >= 0 and lines[i].strip().startswith("#"):
            above.insert(0, lines[i].strip().lstrip("#").strip())
            i -= 1
        if above:
            group = " ".join(above)
            found[node.target.id] = group
        elif lines[i].strip() and _named_in(node.target.id, group):
            found[node.target.id] = group  # e.g. `slots` names drift_psi_window_slots in the PSI comment
        else:
            group = "" if not lines[i].strip() else group
    return found


def _named_in(field: str, comment: str) -> bool:
    """True when a `backticked` word of the comment is a run of the field name's `_`-separated parts."""
    parts = field.split("_")
    for word in re.findall(r"`([a-z_]+)`", comment):
        run = word.split("_")
        if any(parts[i : i + len(run)] == run for i in range(len(parts) - len(run) + 1)):
            return True
    return False


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation).replace("typing.", "").replace("pydantic.types.", "")
    return text.replace("pathlib.", "").replace("NoneType", "None")


def settings_rows() -> list[tuple[str, str, str, str]]:
    """(environment variable, type, default, description) of every setting, in declaration order."""
    from pydantic_core import PydanticUndefined

    from app.settings import Settings

    prefix = str(Settings.model_config.get("env_prefix", ""))
    comments = _comments()
    rows = []
    for name, info in Settings.model_fields.items():
        if info.default is PydanticUndefined and info.default_factory is None:
            default = "required"
        elif info.default_factory is not None:
            default = f"`{info.default_factory()!r}`"
        else:
            default = f"`{info.default!r}`"
        description = info.description or comments.get(name) or FALLBACK.get(name, "")
        if not description:
            raise ValueError(
                f"app/settings.py: setting `{name}` has no description "
                "(fix: give it Field(description=...) or a comment on the lines above it)"
            )
        rows.append((f"`{prefix}{name.upper()}`", f"`{_type_name(info.annotation)}`", default, description))
    return rows


def settings_table() -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    out = ["| variable | type | default | what it does |", "|---|---|---|---|"]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in settings_rows()]
    return "\n".join(out)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """mkdocs hook: fill the configuration page's marker with the generated table."""
    if MARKER in markdown:
        return markdown.replace(MARKER, settings_table())
    return markdown


if __name__ == "__main__":
    print(settings_table())
