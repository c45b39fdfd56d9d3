"""Prompt templates kept as files (`prompts/*.md`), rendered with `string.Template` ($name).

Each file starts with a `version:` line so that an answer can be traced to the prompt that made it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from string import Template


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    template: Template

    def render(self, **values: str) -> str:
        # substitute (not safe_substitute): a missing value is a bug, not a silent hole.
        return self.template.substitute(**values)


@cache
def load_prompt(name: str) -> Prompt:
    text = files("prompts").joinpath(f"{name}.md").read_text(encoding="utf-8")
    first, _, body = text.partition("\n")
    if not first.startswith("version:"):
        raise ValueError(f"prompt {name} must start with a 'version:' line")
    return Prompt(name, first.split(":", 1)[1].strip(), Template(body.lstrip("\n")))
