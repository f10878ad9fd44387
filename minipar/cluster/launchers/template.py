"""Batch script templates: ``str.format`` fields plus a little arithmetic, never ``eval``.

Batch headers often need a number derived from ``n`` (``--nodes={n//4}``, ``-t 1-{n}``),
so a field may be an expression over the other fields. Expressions are parsed with
``ast`` and only integer arithmetic, ``min``/``max`` and names of fields are allowed;
anything else is refused with the template's text in the message, before a job is
submitted.

``/`` of two integers that divide exactly gives an integer (``{n/4}`` with n = 8 is
``2``, not ``2.0``), so templates written for IPython 0.13, where Python 2 rendered it so,
still produce valid headers; an inexact quotient stays a float (``2.5``).
"""
from __future__ import annotations

import ast
import operator
import re
import string

from ...error import TemplateError

_PLAIN_FIELD = re.compile(r"[A-Za-z_]\w*$")
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_FUNCTIONS = {"min": min, "max": max}


def divide(left, right):
    """True division, but an exact quotient of integers stays an integer (see the module docstring)."""
    quotient = left / right
    if type(left) is int and type(right) is int and left % right == 0:
        return left // right
    return quotient


_BINARY[ast.Div] = divide


class BatchTemplate(string.Formatter):
    """Renders a template; ``where`` (a file name or setting) is named in every error."""

    def __init__(self, text: str, where: str):
        super().__init__()
        self.text = text
        self.where = where

    def render(self, fields: dict) -> str:
        try:
            return self.format(self.text, **fields)
        except TemplateError:
            raise
        except (KeyError, IndexError, AttributeError, ValueError) as e:
            raise TemplateError("%s: cannot render the batch template: %s %s; fields are: %s"
                                % (self.where, type(e).__name__, e, ", ".join(sorted(fields)))) from None

    def get_field(self, field_name, args, kwargs):
        if field_name.isdigit():
            raise TemplateError("%s: the batch template has an empty or numbered field ({} or {%s}); name a "
                                "field, e.g. {n}" % (self.where, field_name))
        if _PLAIN_FIELD.match(field_name):
            if field_name not in kwargs:
                raise TemplateError("%s: the batch template uses {%s}, which is not a field (write a literal "
                                    "brace twice: ${{%s}}); fields are: %s"
                                    % (self.where, field_name, field_name, ", ".join(sorted(kwargs))))
            return kwargs[field_name], field_name
        return self.evaluate(field_name, kwargs), field_name

    def evaluate(self, expression: str, fields: dict):
        try:
            tree = ast.parse(expression.strip(), mode="eval")
        except SyntaxError:
            raise TemplateError("%s: {%s} is neither a field nor arithmetic on fields"
                                % (self.where, expression)) from None
        return self._value(tree.body, expression, fields)

    def _value(self, node, expression, fields):
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in fields:
                raise TemplateError("%s: {%s} uses %r, which is not a field; fields are: %s"
                                    % (self.where, expression, node.id, ", ".join(sorted(fields))))
            return fields[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left = self._value(node.left, expression, fields)
            right = self._value(node.right, expression, fields)
            try:
                return _BINARY[type(node.op)](left, right)
            except (TypeError, ZeroDivisionError) as e:
                raise TemplateError("%s: {%s}: %s" % (self.where, expression, e)) from None
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](self._value(node.operand, expression, fields))
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS
                and node.args and not node.keywords):
            return _FUNCTIONS[node.func.id](*(self._value(a, expression, fields) for a in node.args))
        raise TemplateError("%s: {%s}: only numbers, field names, + - * / // %% and min()/max() are allowed "
                            "in a template field" % (self.where, expression))
