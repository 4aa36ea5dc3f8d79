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

A pool listing's document is most of the response (4.6 MB for 1,000 VMs) and expat would still
hand it to ElementTree in a chunk per escaped character. So a ``<string>`` over
:data:`LONG_STRING` bytes whose text is plain (only the five predefined entities, no markup, no
character reference, no carriage return, no control character: what xmlrpc-c writes for oned's
documents) is cut out of the envelope before parsing and unescaped with ``bytes.replace``. Only
in a document where ``<string>`` can only be a tag (:func:`_plain_document`: it starts with its
root or a declaration of UTF-8, and has no DOCTYPE, comment, CDATA section or processing
instruction); any other string, or document, is left to ElementTree, and
tests/unit/test_xmlrpc_envelope.py checks the result is ``xmlrpc.client``'s on each kind.
"""

from __future__ import annotations

import base64
import re
import secrets
import xmlrpc.client
from decimal import Decimal
from typing import Any
from xml.etree import ElementTree

__all__ = ["loads"]

_INTS = frozenset({"int", "i4", "i8", "i1", "i2", "biginteger"})

#: A ``<string>``'s text is cut out of the envelope from this many bytes on.
LONG_STRING = 1 << 16

_OPEN, _CLOSE = b"<string>", b"</string>"
_ENTITIES = ((b"&lt;", b"<"), (b"&gt;", b">"), (b"&quot;", b'"'), (b"&apos;", b"'"))
#: What only ElementTree may read: markup or a CDATA section, a character reference, a
#: carriage return (line ends are normalised), ``]]>``, a character XML does not allow.
_NOT_PLAIN = (b"<", b"\r", b"&#", b"]]>", "\ufffe".encode(), "\uffff".encode())
_CONTROL = bytes(range(0, 9)) + b"\x0b\x0c" + bytes(range(14, 32))
_DECLARATION = re.compile(rb"<\?xml\s[^>]*?\?>")
_ENCODING = re.compile(rb"\sencoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")


def loads(body: bytes | str) -> tuple[Any, ...]:
    """The params of an XML-RPC ``<methodResponse>``; a ``<fault>`` raises
    :class:`xmlrpc.client.Fault`. A body that is not XML raises ElementTree's ``ParseError``
    (a ``SyntaxError``, where ``xmlrpc.client`` raises expat's error); one that is XML but not
    a response raises :class:`xmlrpc.client.ResponseError`."""
    cut: dict[str, str] = {}
    if isinstance(body, bytes) and len(body) > LONG_STRING:
        body = _cut_long_strings(body, cut)
    root = ElementTree.fromstring(body)
    if root.tag != "methodResponse":
        raise xmlrpc.client.ResponseError(f"not an XML-RPC response: <{root.tag}>")
    fault = root.find("fault")
    if fault is not None:
        detail = _value(_child(fault, "value"), cut)
        if not isinstance(detail, dict):
            raise xmlrpc.client.ResponseError("an XML-RPC fault without its struct")
        raise xmlrpc.client.Fault(**detail)
    params = root.find("params")
    if params is None:
        raise xmlrpc.client.ResponseError("an XML-RPC response without params")
    return tuple(_value(_child(param, "value"), cut) for param in params.findall("param"))


def _cut_long_strings(body: bytes, cut: dict[str, str]) -> bytes:
    """``body`` with the text of each long plain ``<string>`` replaced by a placeholder (a
    random token, never in oned's answer), the text unescaped into ``cut`` under it."""
    if not _plain_document(body):
        return body
    parts, at, token = [], 0, secrets.token_hex(16)
    while True:
        start = body.find(_OPEN, at)
        if start < 0:
            break
        start += len(_OPEN)
        end = body.find(_CLOSE, start)
        if end < 0:
            break  # not XML: ElementTree says so
        raw = body[start:end]
        text = _plain_text(raw) if len(raw) >= LONG_STRING else None
        if text is None:
            parts.append(body[at:end])
        else:
            placeholder = f"{token}-{len(cut)}"
            cut[placeholder] = text
            parts.append(body[at:start] + placeholder.encode())
        at = end
    if not cut:
        return body
    parts.append(body[at:])
    return b"".join(parts)


def _child(node: ElementTree.Element, tag: str) -> ElementTree.Element:
    found = node.find(tag)
    if found is None:
        raise xmlrpc.client.ResponseError(f"XML-RPC <{node.tag}> without <{tag}>")
    return found


def _plain_document(body: bytes) -> bool:
    """Whether ``<string>`` in ``body`` can only be a tag: the document starts with its root
    or an XML declaration naming UTF-8 or no encoding (no byte order mark, no other
    encoding), and holds no ``<!`` (DOCTYPE, comment, CDATA) and no processing instruction
    after the declaration."""
    start = 0
    if body.startswith(b"<?xml"):
        declaration = _DECLARATION.match(body)
        if declaration is None:
            return False
        encoding = _ENCODING.search(declaration.group(0))
        if encoding is not None and encoding.group(1).lower() != b"utf-8":
            return False
        start = declaration.end()
    elif not body.startswith(b"<"):
        return False
    return b"<!" not in body and body.find(b"<?", start) < 0


def _plain_text(raw: bytes) -> str | None:
    """The text of a ``<string>`` whose content is ``raw``, or ``None`` when only ElementTree
    may read it (see :data:`_NOT_PLAIN`, another entity than the five, not UTF-8). On bytes,
    where ``replace`` and ``count`` are fastest."""
    if any(bad in raw for bad in _NOT_PLAIN) or len(raw.translate(None, _CONTROL)) != len(raw):
        return None
    text = raw
    for entity, char in _ENTITIES:
        text = text.replace(entity, char)
    if text.count(b"&") != text.count(b"&amp;"):
        return None  # another entity: ElementTree refuses it
    try:
        return text.replace(b"&amp;", b"&").decode("utf-8")
    except UnicodeDecodeError:
        return None


def _value(node: ElementTree.Element, cut: dict[str, str]) -> Any:
    typed = next(iter(node), None)
    if typed is None:  # <value>text</value>: a string
        return node.text or ""
    tag, text = typed.tag, typed.text or ""
    if tag == "string":
        return cut.get(text, text) if cut else text
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
        return [_value(v, cut) for v in _child(typed, "data").findall("value")]
    if tag == "struct":
        return {(_child(m, "name").text or ""): _value(_child(m, "value"), cut)
                for m in typed.findall("member")}
    if tag == "base64":
        return xmlrpc.client.Binary(base64.decodebytes(text.encode("ascii")))
    if tag == "dateTime.iso8601":
        return xmlrpc.client.DateTime(text)
    raise xmlrpc.client.ResponseError(f"unknown XML-RPC type <{tag}>")
