"""Text from users, URLs, uploads and the Hub is data: the one place that makes it safe to show.

Streamlit renders the body of `st.error` / `st.warning` / `st.info` / `st.success`, `st.caption`,
`st.markdown`, titles, metric labels and widget labels/help as GitHub-flavoured Markdown, and Plotly
renders a subset of HTML (`<a href>`, `<b>`, `<br>` ...) in titles, trace names, tick labels and
hover text. A model id from `?hub=`, an uploaded file name, a `torch_dtype` from a Hub config or an
error message quoting `?ctx=` must therefore never be pasted into either unescaped: a crafted link
would make kvplan's own red error box show an attacker's image or "sign in again" link.

Rules (every page and chart follows them):
- Plain text (anything that may contain user input, including every `str(err)`): show it with
  `error()`, `warning()`, `info()`, `success()`, `caption()` below, which escape it whole.
- kvplan's own Markdown with user values inside: build it with `md(template, *values)`; the template
  is trusted, every value is escaped (`"**Fits** on {}: {:,} users"`).
- Plotly: `plot_text(value)` for any string put into a figure (charts.py does it for every string it
  is given, so pages pass plain text).

Pure functions first (no streamlit import at module level), so charts.py and formulas.py use them too.
"""

from __future__ import annotations

import string
from typing import Any

# U+2060 WORD JOINER: invisible, zero width. GitHub-flavoured Markdown turns bare `http://x`,
# `www.x` and `a@b.c` into links even when the punctuation is backslash-escaped (the escapes are
# resolved before the autolink pass), so the trigger sequences are broken with this character.
_JOINER = "\u2060"
# Every ASCII punctuation character may be backslash-escaped in CommonMark and then renders as
# itself; escaping all of them disables emphasis, links, images, code, headings, tables, HTML,
# Streamlit's `:color[...]` / `:material/...:` directives and `$...$` LaTeX at once.
_PUNCT = frozenset(string.punctuation)
_PLOT = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
MAX_SHOWN = 2000  # characters of user-controlled text shown in one message (a 5,000-char ?hub= id)


def _clip(s: str) -> str:
    return s if len(s) <= MAX_SHOWN else s[:MAX_SHOWN] + "…"


def escape_md(value: Any) -> str:
    """Markdown source that renders as exactly `str(value)`, as plain text: no link, image, emphasis,
    HTML, code, LaTeX, emoji/icon directive or autolink can come out of it. Newlines become spaces
    (one message is one line)."""
    s = _clip(str(value)).replace("\r", " ").replace("\n", " ")
    out = []
    for i, ch in enumerate(s):
        if ch in _PUNCT:
            if ch == "@":  # `a@b.c` autolinks as an e-mail address
                out.append(_JOINER)
            out.append("\\" + ch)
            if ch == ":" and s[i + 1:i + 2].strip():  # `http://`, `:emoji:`, `:material/x:`; not "field: x"
                out.append(_JOINER)
        else:
            out.append(ch)
            if ch in "wW" and s[i + 1:i + 2] == "." and s[max(0, i - 2):i + 1].lower() == "www":
                out.append(_JOINER)  # `www.evil.example` autolinks without a scheme
    return "".join(out)


def unescape_md(source: str) -> str:
    """The plain text an `escape_md` string renders as (tests read messages back with it)."""
    out, i = [], 0
    while i < len(source):
        ch = source[i]
        if ch == "\\" and i + 1 < len(source) and source[i + 1] in _PUNCT:
            out.append(source[i + 1])
            i += 2
            continue
        if ch != _JOINER:
            out.append(ch)
        i += 1
    return "".join(out)


class _EscapingFormatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        return escape_md(super().format_field(value, format_spec))


_FORMATTER = _EscapingFormatter()


def md(template: str, /, *args: Any, **kwargs: Any) -> str:
    """kvplan's own Markdown `template` (trusted: a literal in kvplan's code) with every `{}` field
    escaped by `escape_md` after formatting, so `md("**Fits** on {}: {:,} users", gpu, n)` keeps
    kvplan's bold and shows `gpu` as plain text. Never pass user text as the template."""
    return _FORMATTER.format(template, *args, **kwargs)


def plot_text(value: Any) -> str:
    """A string safe inside a Plotly figure (title, trace name, category, tick or hover text):
    `&`, `<`, `>` become entities, so Plotly's HTML subset (`<a href>`, `<img>`-like tags, `<br>`)
    cannot be produced from input; Plotly shows the entities as the characters."""
    return "".join(_PLOT.get(ch, ch) for ch in _clip(str(value)))


def plural(count: int, word: str, plural_form: str | None = None) -> str:
    """"1 user", "2 users", "1,000 users" (`plural_form` for irregular words)."""
    return f"{count:,} {word if count == 1 else (plural_form or word + 's')}"


_SUP = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def sci(value: float, digits: int = 2) -> str:
    """7.6e15 as "7.6 × 10¹⁵" (numbers below 10,000 as they are)."""
    if value == 0 or abs(value) < 1e4:
        return f"{value:,.6g}"
    mant, exp = f"{value:.{digits - 1}e}".split("e")
    return f"{mant} × 10{str(int(exp)).translate(_SUP)}"


# --- Streamlit display of plain text (lazy streamlit import: the functions above stay pure) ---------

def _st():
    import streamlit as st
    return st


def error(message: Any) -> None:
    """`st.error` showing `message` (an exception or any text) as plain text."""
    _st().error(escape_md(message))


def warning(message: Any) -> None:
    """`st.warning` showing `message` as plain text."""
    _st().warning(escape_md(message))


def info(message: Any) -> None:
    """`st.info` showing `message` as plain text."""
    _st().info(escape_md(message))


def success(message: Any) -> None:
    """`st.success` showing `message` as plain text."""
    _st().success(escape_md(message))


def caption(message: Any) -> None:
    """`st.caption` showing `message` as plain text."""
    _st().caption(escape_md(message))
