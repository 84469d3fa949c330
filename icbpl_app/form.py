"""The Data & model page's fields, derived from the parameter table (icbpl_core/params.py):
each field's widget kind, label, help, range, step and choices. No Streamlit here; the page
draws them (pages/common.py: param_input).

Optional numbers (the image limit, the input size: "not given" means the dataset's or
the backbone's choice) show 0 for "not given".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from icbpl_core import params


@dataclass(frozen=True)
class Field:
    param: params.Param

    @property
    def name(self) -> str:
        return self.param.name

    @property
    def key(self) -> str:
        """The widget's session-state key."""
        return f"d_{self.name}"

    @property
    def kind(self) -> str:
        """number, choice, bool or text."""
        p = self.param
        if p.type is bool:
            return "bool"
        if p.type in (int, float):
            return "number"
        return "choice" if p.choices is not None else "text"

    @property
    def label(self) -> str:
        p = self.param
        return p.label + (" (0 = default)" if p.optional and self.kind == "number" and p.name != "limit"
                          else " (0 = all)" if p.name == "limit" else "")

    @property
    def help(self) -> str:
        p = self.param
        text = p.help[:1].upper() + p.help[1:] + "."
        if self.kind == "number" and p.describe_range():
            text += f" {p.describe_range()[:1].upper()}{p.describe_range()[1:]}."
        if p.modes != params.MODES:
            text += f" Applies in {' and '.join(p.modes)} mode."
        return text

    @property
    def low(self):
        p = self.param
        if self.kind != "number" or p.low is None:
            return None
        return p.type(0) if p.optional else p.type(p.low)

    @property
    def high(self):
        p = self.param
        return None if self.kind != "number" or p.high is None else p.type(p.high)

    @property
    def step(self):
        p = self.param
        if self.kind != "number":
            return None
        return p.type(p.step) if p.step is not None else p.type(1 if p.type is int else 0.1)

    @property
    def format(self) -> str | None:
        """printf format of a float field (small steps need more digits than Streamlit's default)."""
        return "%.6g" if self.kind == "number" and self.param.type is float else None

    def options(self) -> list[str]:
        return self.param.options()

    def to_widget(self, value: Any) -> Any:
        """A draft value as the widget shows it: "not given" as 0 (or empty text), numbers kept in range."""
        if self.kind == "text":
            return "" if value is None else str(value)
        if self.kind != "number":
            return value
        if value is None:
            return self.param.type(0)
        value = self.param.type(value)
        if self.low is not None:
            value = max(self.low, value)
        if self.high is not None:
            value = min(self.high, value)
        return value

    def from_widget(self, value: Any) -> Any:
        """A widget's value as the draft holds it: 0 of an optional number (empty text) is "not given"."""
        if self.kind == "text":
            return (value or "").strip() or None
        if self.kind == "number":
            value = self.param.type(value)
            if self.param.optional and value == 0:
                return None
        return value


FIELDS: dict[str, Field] = {p.name: Field(p) for p in params.on("form")}


def field(name: str) -> Field:
    return FIELDS[name]


def advanced(group: str) -> list[Field]:
    """The fields of the "Advanced" section for a group (model, training), in table order."""
    return [f for f in FIELDS.values() if f.param.advanced and f.param.group == group]
