"""kvplan.ui.text: user text is shown as text, never as Markdown or Plotly HTML.

The real-browser proof is tests/test_browser.py::test_crafted_*; these pin the escaping rules.
"""

from __future__ import annotations

import re
import string

from hypothesis import given
from hypothesis import strategies as st

from kvplan.ui.text import MAX_SHOWN, escape_md, md, plot_text, unescape_md

JOINER = "\u2060"


@given(st.text(max_size=300))
def test_escape_round_trips_to_the_same_text(s):
    shown = unescape_md(escape_md(s))
    assert shown == s.replace("\r", " ").replace("\n", " ")[:MAX_SHOWN] + ("…" if len(s) > MAX_SHOWN else "")


@given(st.text(alphabet=string.printable, max_size=300))
def test_every_punctuation_character_is_escaped(s):
    out = escape_md(s).replace(JOINER, "")
    i = 0
    while i < len(out):  # every ASCII punctuation character comes as a backslash pair
        if out[i] == "\\":
            assert out[i + 1] in string.punctuation
            i += 2
            continue
        assert out[i] not in string.punctuation, (s, out)
        i += 1


def test_autolink_triggers_are_broken():
    out = escape_md("see http://evil.example, www.evil.example or me@evil.example :smile: :material/home:")
    assert "http\\:" + JOINER in out  # "http:" never directly followed by "//"
    assert "www" + JOINER + "\\." in out
    assert JOINER + "\\@" in out
    assert "\\:" + JOINER + "smile" in out and "\\:" + JOINER + "material" in out
    assert "expired\\: sign" in escape_md("expired: sign")  # ordinary prose keeps its colon


def test_md_keeps_the_template_and_escapes_the_values():
    assert md("**Fits** on {}: {:,} users", "[x](http://e)", 12345) == \
        "**Fits** on \\[x\\]\\(http\\:" + JOINER + "\\/\\/e\\): 12\\,345 users"
    assert md("{name}", name="*b*") == "\\*b\\*"


def test_plot_text_escapes_plotly_html():
    assert plot_text('<a href="http://e">x</a> & <br>') == '&lt;a href="http://e"&gt;x&lt;/a&gt; &amp; &lt;br&gt;'
    assert not re.search(r"<|>", plot_text("<img src=x>"))
    assert len(plot_text("x" * 10_000)) == MAX_SHOWN + 1
