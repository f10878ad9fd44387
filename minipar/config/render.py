"""The commented ``minipar.toml`` that ``python -m minipar.profile create`` writes."""
from __future__ import annotations

import dataclasses
import textwrap

from .schema import REGISTRY, default_of
from .types import toml_value

_PACKAGE = (__package__ or "minipar.config").rpartition(".")[0]
"""This copy's import name ('minipar', or a vendored path), for the commands in the header."""

_HEADER = """\
## minipar profile configuration.
##
## Every setting is listed with its default, commented out: uncomment a line and
## change the value to override it. Command-line options override this file, e.g.
##   python -m %s.controller --controller.ip='*'
""" % _PACKAGE


def render_profile() -> str:
    """The commented ``minipar.toml`` that ``profile create`` writes.

    Section headers stay live (an empty table loads as defaults) so that
    uncommenting any ``# key = value`` line gives a valid file on its own. Prose
    starts with ``##`` (as in Jupyter's generated configs) so a wrapped help line
    can never be mistaken for a setting, by a reader or by a script.
    """
    lines = _HEADER.splitlines()
    for name, sec in REGISTRY.items():
        lines.append("")
        if sec.doc:
            first = " ".join(sec.doc.split("\n\n")[0].split())
            lines.extend("## " + w for w in textwrap.wrap(first, 76))
        lines.append("[%s]" % name)
        for f in dataclasses.fields(sec.cls):
            help_text = f.metadata["help"]
            if "choices" in f.metadata:
                help_text += " One of: %s." % ", ".join(toml_value(c) for c in f.metadata["choices"])
            lines.append("")
            lines.extend("## " + w for w in textwrap.wrap(help_text, 76))
            lines.append("# %s = %s" % (f.name, toml_value(default_of(f))))
    return "\n".join(lines) + "\n"
