"""report.html: one offline page beside the figures, which it references by relative name (only files that exist)."""
from __future__ import annotations

from html import escape
from pathlib import Path

from outputs import write_bytes
from report.parts import Report, Table
from report.references import REFERENCES

CSS = """
body { font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #222;
       max-width: 62rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { margin-top: 2.5rem; border-bottom: 1px solid #ccc; }
.sub { color: #666; } .note { color: #666; font-size: .9rem; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .85rem; }
th, td { border: 1px solid #ddd; padding: .2rem .5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } caption { text-align: left; font-weight: bold; padding: .2rem 0; }
figure { margin: 1.2rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .9rem; color: #444; } figcaption b { color: #222; }
.refs { font-size: .85rem; color: #444; } nav a { margin-right: .8rem; }
"""


def _table(table: Table) -> str:
    """An HTML table."""
    head = "".join(f"<th>{escape(h)}</th>" for h in table.header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>\n" for row in table.rows)
    cap = f"<caption>{escape(table.title)}</caption>" if table.title else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>\n"


def render_html(report: Report, out: Path, data_files: list[str]) -> str:
    """The page's text: sections with relative <img> links to figures that exist in `out`."""
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
             f"<title>{escape(report.title)}</title><style>{CSS}</style></head><body>\n",
             f"<h1>{escape(report.title)}</h1>\n<p class=\"sub\">{escape(report.subtitle)}</p>\n<nav>"]
    parts += [f"<a href=\"#s{k}\">{escape(s.title.split(':')[0])}</a>" for k, s in enumerate(report.sections)]
    parts.append("</nav>\n")
    for k, section in enumerate(report.sections):
        parts.append(f"<section id=\"s{k}\"><h2>{escape(section.title)}</h2>\n")
        parts += [f"<p>{escape(p)}</p>\n" for p in section.paragraphs]
        parts += [f"<p class=\"note\">Note: {escape(n)}</p>\n" for n in section.notes]
        parts += [_table(t) for t in section.tables + section.html_tables]
        for fig in section.figures:
            if (out / fig.file).is_file():
                parts.append(f"<figure><a href=\"{escape(fig.file)}\"><img src=\"{escape(fig.file)}\" "
                             f"alt=\"{escape(fig.title)}\" loading=\"lazy\"></a><figcaption><b>{escape(fig.title)}</b> "
                             f"({escape(fig.file)}). {escape(fig.caption)}</figcaption></figure>\n")
        if section.refs:
            parts.append("<ol class=\"refs\">" + "".join(f"<li>{escape(REFERENCES[r])}</li>" for r in section.refs)
                         + "</ol>\n")
        parts.append("</section>\n")
    links = [f"<a href=\"{escape(f)}\">{escape(f)}</a>" for f in data_files if (out / f).is_file()]
    if links:
        parts.append(f"<p class=\"note\">Data files of this run: {', '.join(links)}.</p>\n")
    parts.append("</body></html>\n")
    return "".join(parts)


def write_html(report: Report, out: Path, path: Path, data_files: list[str]) -> Path:
    """Write report.html atomically."""
    return write_bytes(path, render_html(report, out, data_files).encode("utf-8"))
