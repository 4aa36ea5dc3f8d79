"""XML-RPC responses decoded by ElementTree's C parser.

``xmlrpc.client`` decodes a response with Python callbacks: one per element, and one per chunk
of text, and expat hands over the text of a ``<string>`` in a chunk per escaped character. oned
returns each pool listing as one XML document escaped inside a ``<string>``, so a listing of
1,000 VMs (their templates included) costs over a million Python calls, about 1 s of CPU per
site on this project's lab: most of the time ``plan()`` spends reading OpenNebula at scale. Here
ElementTree (expat, with its tree built in C) parses the envelope and the few values are read
from the tree.

:func:`loads` returns what ``xmlrpc.client``'s unmarshaller returns (a tuple of the params, or
:class:`xmlrpc.client.Fault` raised for a ``<fault>``) for the XML-RPC specification's types
and ``xmlrpc.client``'s own extensions (``i8``, ``nil``, ``bigdecimal``...), not for the
``ex:``-prefixed forms of Apache's extensions, which oned (xmlrpc-c) never sends;
tests/unit/test_xmlrpc_envelope.py compares both on oned's documents (the shared samples) and
on every type.
"""

from __future__ import annotations

import base64
import xmlrpc.client
from decimal import Decimal
from typing import Any
from xml.etree import ElementTree

__all__ = ["loads"]

_INTS = frozenset({"int", "i4", "i8", "i1", "i2", "biginteger"})


def loads(body: bytes | str) -> tuple[Any, ...]:
    """The params of an XML-RPC ``<methodResponse>``; a ``<fault>`` raises
    :class:`xmlrpc.client.Fault`. A body that is not XML raises ElementTree's ``ParseError``
    (a ``SyntaxError``, where ``xmlrpc.client`` raises expat's error); one that is XML but not
    a response raises :class:`xmlrpc.client.ResponseError`."""
    root = ElementTree.fromstring(body)
    if root.tag != "methodResponse":
        raise xmlrpc.client.ResponseError(f"not an XML-RPC response: <{root.tag}>")
    fault = root.find("fault")
    if fault is not None:
        detail = _value(_child(fault, "value"))
        if not isinstance(detail, dict):
            raise xmlrpc.client.ResponseError("an XML-RPC fault without its struct")
        raise xmlrpc.client.Fault(**detail)
    params = root.find("params")
    if params is None:
        raise xmlrpc.client.ResponseError("an XML-RPC response without params")
    return tuple(_value(_child(param, "value")) for param in params.findall("param"))


def _child(node: ElementTree.Element, tag: str) -> ElementTree.Element:
    found = node.find(tag)
    if found is None:
        raise xmlrpc.client.ResponseError(f"XML-RPC <{node.tag}> without <{tag}>")
    return found


def _value(node: ElementTree.Element) -> Any:
    typed = next(iter(node), None)
    if typed is None:  # <value>text</value>: a string
        return node.text or ""
    tag, text = typed.tag, typed.text or ""
    if tag == "string":
        return text
    if tag in _INTS:
        return int(text)
    if tag == "boolean":
        if text not in ("0", "1"):
            raise TypeError("bad boolean value")
        return text == "1"
    if tag in ("double", "float"):
        return float(text)
    if tag == "bigdecimal":
        return Decimal(text)
    if tag == "nil":
        return None
    if tag == "array":
        return [_value(v) for v in _child(typed, "data").findall("value")]
    if tag == "struct":
        return {(_child(m, "name").text or ""): _value(_child(m, "value"))
                for m in typed.findall("member")}
    if tag == "base64":
        return xmlrpc.client.Binary(base64.decodebytes(text.encode("ascii")))
    if tag == "dateTime.iso8601":
        return xmlrpc.client.DateTime(text)
    raise xmlrpc.client.ResponseError(f"unknown XML-RPC type <{tag}>")
