"""The XML-RPC response decoder (ceph_failback/opennebula/_envelope.py) returns exactly what
``xmlrpc.client`` returns: on oned's real replies, on every XML-RPC type, and on faults."""

from __future__ import annotations

import datetime
import xmlrpc.client
from decimal import Decimal
from pathlib import Path
from xml.etree import ElementTree
from xml.parsers.expat import ExpatError

import pytest

from ceph_failback.opennebula._envelope import LONG_STRING, _plain_document, loads

SAMPLES = Path(__file__).parent / "data" / "opennebula-samples"


def reference(body: bytes | str) -> tuple:
    return xmlrpc.client.loads(body)[0]


@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*.xml")))
def test_oned_replies_decode_as_xmlrpc_client_decodes_them(sample: str) -> None:
    document = (SAMPLES / sample).read_text()
    # What oned sends: [success, the document, error code] (RequestXRPC::success_response).
    body = xmlrpc.client.dumps(((True, document, 0),), methodresponse=True)
    assert loads(body) == reference(body) == ([True, document, 0],)


VALUES = [
    0, -7, 2**31 - 1, True, False, 1.5, -0.0, "", "plain", "<&> ünïcode ]]>", "  spaced\n",
    None, [], [1, "two", [3.0, None]], {}, {"faultless": 1, "nested": {"a": [True]}},
    xmlrpc.client.Binary(b"\x00\xffbytes"), xmlrpc.client.DateTime(datetime.datetime(2026, 12, 4)),
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_every_type_decodes_as_xmlrpc_client_decodes_it(value: object) -> None:
    body = xmlrpc.client.dumps((value,), methodresponse=True, allow_none=True)
    assert loads(body) == reference(body)
    assert type(loads(body)[0]) is type(reference(body)[0])


@pytest.mark.parametrize("body", [
    "<methodResponse><params><param><value>untyped</value></param></params></methodResponse>",
    "<methodResponse><params><param><value/></param></params></methodResponse>",
    "<methodResponse><params><param><value><string/></string></value></param></params>"
    "</methodResponse>".replace("<string/></string>", "<string/>"),
    "<methodResponse><params><param><value>\n <i8>9007199254740993</i8>\n</value></param>"
    "<param><value><i4>3</i4></value></param></params></methodResponse>",
    "<methodResponse><params><param><value><double>1e300</double></value></param></params>"
    "</methodResponse>",
    "<methodResponse><params><param><value><bigdecimal>1.10</bigdecimal></value></param>"
    "</params></methodResponse>",
    "<methodResponse><params/></methodResponse>",
])
def test_hand_written_envelopes(body: str) -> None:
    assert loads(body) == reference(body)


def test_bigdecimal_keeps_its_digits() -> None:
    body = ("<methodResponse><params><param><value><bigdecimal>1.10</bigdecimal></value>"
            "</param></params></methodResponse>")
    assert loads(body) == (Decimal("1.10"),)


def test_a_fault_raises_the_same_fault() -> None:
    body = xmlrpc.client.dumps(xmlrpc.client.Fault(-32601, "no such method <x>"),
                               methodresponse=True)
    with pytest.raises(xmlrpc.client.Fault) as ours:
        loads(body)
    with pytest.raises(xmlrpc.client.Fault) as theirs:
        reference(body)
    assert (ours.value.faultCode, ours.value.faultString) == (
        theirs.value.faultCode, theirs.value.faultString) == (-32601, "no such method <x>")


@pytest.mark.parametrize("body, error", [
    ("<html>Bad Gateway</html>", xmlrpc.client.ResponseError),
    ("<methodResponse></methodResponse>", xmlrpc.client.ResponseError),
    ("<methodResponse><params><param><value><boolean>2</boolean></value></param></params>"
     "</methodResponse>", TypeError),
    ("<methodResponse><params><param><value><int>x</int></value></param></params>"
     "</methodResponse>", ValueError),
    ("<methodResponse><params><param><value><string>cut", ElementTree.ParseError),
])
def test_malformed_answers_raise(body: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        loads(body)


def _long(text: str) -> str:
    """``text`` repeated past the length from which strings are cut out of the envelope."""
    return text * (LONG_STRING // max(1, len(text.encode())) + 2)


@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*.xml")))
def test_a_long_listing_decodes_as_xmlrpc_client_decodes_it(sample: str) -> None:
    # A pool listing's document: long enough to be cut out of the envelope (bytes, as the
    # transport hands them over).
    document = "<VM_POOL>" + _long((SAMPLES / sample).read_text()) + "</VM_POOL>"
    body = xmlrpc.client.dumps(((True, document, 0),), methodresponse=True).encode()
    assert len(body) > LONG_STRING
    assert loads(body) == reference(body) == ([True, document, 0],)


@pytest.mark.parametrize("text", [
    "plain & <escaped> \"quoted\" 'apos' &amp;lt; ünïcode",  # entities and multi-byte text
    "line\r\nends\rkept as XML reads them",                   # normalised: left to ElementTree
    "tab\tand newline\n",
], ids=["entities", "carriage-return", "whitespace"])
def test_long_strings_decode_as_xmlrpc_client_decodes_them(text: str) -> None:
    body = xmlrpc.client.dumps(([_long(text), 7, {"k": _long(text)}],), methodresponse=True
                               ).encode()
    assert loads(body) == reference(body)


@pytest.mark.parametrize("raw", [
    b"<![CDATA[<x>]]>" + b"a" * LONG_STRING,      # a CDATA section
    b"&#65;&#x42;" + b"c" * LONG_STRING,          # character references
    b"d" * LONG_STRING + b"&nbsp;",               # not a predefined entity: an error
    b"e" * LONG_STRING + b"\x01",                 # not an XML character: an error
    b"f" * LONG_STRING + b"]]>",                  # not allowed in text: an error
    b"g" * LONG_STRING + "\ufffe".encode(),       # not an XML character: an error
])
def test_long_strings_that_are_not_plain_are_left_to_elementtree(raw: bytes) -> None:
    body = (b"<?xml version='1.0'?><methodResponse><params><param><value><string>" + raw
            + b"</string></value></param></params></methodResponse>")
    try:
        expected: object = reference(body)
    except ExpatError:  # not XML: ElementTree's error, as for any answer that is not XML
        with pytest.raises(ElementTree.ParseError):
            loads(body)
    else:
        assert loads(body) == expected


def test_a_long_string_in_another_encoding_is_left_to_elementtree() -> None:
    text = "caf\u00e9 " * LONG_STRING
    body = ("<?xml version='1.0' encoding='iso-8859-1'?><methodResponse><params><param><value>"
            f"<string>{text}</string></value></param></params></methodResponse>").encode("latin-1")
    assert loads(body) == reference(body) == (text,)


def test_string_tags_inside_a_cdata_section_are_text() -> None:
    inner = "<![CDATA[<string>" + "h" * LONG_STRING + "</string>]]>"
    body = ("<?xml version='1.0'?><methodResponse><params><param><value><string>" + inner
            + "</string></value></param></params></methodResponse>").encode()
    assert loads(body) == reference(body)


_RESPONSE = (b"<methodResponse><params><param><value>%s</value></param></params>"
             b"</methodResponse>")


@pytest.mark.parametrize("body", [
    # Another encoding declared with spaces around '=', or after a byte order mark.
    b"<?xml version='1.0' encoding = 'iso-8859-1'?>"
    + _RESPONSE % (b"<string>" + b"\xc3\xa9" * 40000 + b"</string>"),
    b"\xef\xbb\xbf<?xml version='1.0' encoding='iso-8859-1'?>"
    + _RESPONSE % (b"<string>" + b"\xc3\xa9" * 40000 + b"</string>"),
    # An encoding name expat does not know.
    b"<?xml version='1.0' encoding='utf8'?>" + _RESPONSE % (b"<string>" + b"u" * 70000
                                                           + b"</string>"),
    # UTF-16 whose bytes happen to spell the tags.
    "\ufeff<methodResponse/>".encode("utf-16-le") + b"<string>" + b"v" * 70000 + b"</string>",
    # A processing instruction, a DOCTYPE's entity: '<string>' is not a tag there.
    _RESPONSE % (b"<?pi <string>" + b"A" * 70000 + b"?>x</string>?>"),
], ids=["spaced-encoding", "bom-then-encoding", "utf8-alias", "utf-16", "processing-instruction"])
def test_documents_where_a_string_tag_may_be_something_else_are_left_to_elementtree(
        body: bytes) -> None:
    try:
        expected: object = reference(body)
    except ExpatError:
        with pytest.raises(ElementTree.ParseError):
            loads(body)
    except Exception as exc:  # noqa: BLE001 - the same failure is expected
        with pytest.raises(type(exc)):
            loads(body)
    else:
        assert loads(body) == expected


def test_a_document_with_a_doctype_is_never_cut() -> None:
    # An internal entity may hold '<string>': only ElementTree reads such a document (which
    # expands entities differently from xmlrpc.client's callbacks: not this module's concern,
    # oned never sends a DOCTYPE).
    body = (b'<!DOCTYPE methodResponse [<!ENTITY e "<string>' + b"B" * 70000 + b'</string>">]>'
            + _RESPONSE % b"<string>&e;</string>")
    assert not _plain_document(body)
    assert _plain_document(b"<?xml version='1.0'?>" + _RESPONSE % b"<string>x</string>")
