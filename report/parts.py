"""The report's parts: sections of sentences, tables and captioned figures."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Figure:
    """One figure file of the output folder with its caption."""

    file: str
    title: str
    caption: str


@dataclass
class Table:
    """A small text table."""

    header: list[str]
    rows: list[list[str]]
    title: str = ""


@dataclass
class Section:
    """A report section: sentences, tables, notes on missing pieces, figures."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)   # keys of REFERENCES
    html_tables: list[Table] = field(default_factory=list)   # report.html only (e.g. wall-clock timings)


@dataclass
class Report:
    """The whole report."""

    title: str
    subtitle: str
    sections: list[Section]
