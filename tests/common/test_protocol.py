"""The wire layout: one signed envelope frame, then the payload frames."""
from __future__ import annotations

import pytest

import json

from minipar.protocol import DELIM, ProtocolError, Session, envelope_parts, header_json, json_bytes


def test_a_message_is_the_delimiter_one_envelope_and_its_buffers():
    sender, receiver = Session("k"), Session("k")
    header, frames = sender.build("apply_request", {"x": 1}, {"msg_id": "p"}, {"dest": 0})
    assert len(frames) == 2 and frames[0] == DELIM
    signature, parts = envelope_parts(frames[1])
    assert len(signature) == 64 and parts[0].startswith(b'{"msg_id":')
    msg = receiver.parse([b"peer"] + frames + [b"payload"])
    assert msg.idents == [b"peer"] and msg.msg_id == header["msg_id"]
    assert (msg.parent, msg.metadata, msg.content) == ({"msg_id": "p"}, {"dest": 0}, {"x": 1})
    assert msg.buffers == [b"payload"] and msg.parts == parts
    assert header_json(msg.frames) == msg.header


def test_a_new_header_is_signed_over_the_same_parts_and_buffers():
    sender, receiver = Session("k"), Session("k")
    header, frames = sender.build("apply_request", {"x": 1}, None, {"dest": 0})
    again = sender.with_header(frames + [b"payload"], dict(header, msg_id="other"))
    msg = receiver.parse(again)
    assert msg.msg_id == "other" and msg.content == {"x": 1} and msg.buffers == [b"payload"]
    assert envelope_parts(again[1])[1][1:] == envelope_parts(frames[1])[1][1:]


def test_a_message_in_protocol_1s_layout_is_refused_as_such():
    old = Session("k")
    parts = [b'{"msg_id":"a","msg_type":"connect_request","session":"s","date":1.0}', b"{}", b"{}", b"{}"]
    raw = [DELIM, old.sign(b"".join(parts))] + parts
    with pytest.raises(ProtocolError, match="protocol 1's frame layout, from an older minipar"):
        Session("k").parse(raw)


@pytest.mark.parametrize("envelope, problem", [
    (b"no newline at all", "malformed envelope"),
    (b"\n{}\n{}\n{}\n{}", "unsigned message"),
    (b"0" * 64 + b"\n{}\n{}\n{}\n{}", "bad signature"),
])
def test_a_broken_envelope_is_refused_naming_what_is_wrong(envelope, problem):
    with pytest.raises(ProtocolError, match=problem):
        Session("k").parse([DELIM, envelope])


@pytest.mark.parametrize("body", [b"{}\n{}\n{}", b'{}\n{}\n{}\n{"a":\n1}'], ids=["three parts", "a raw newline"])
def test_a_signed_envelope_that_is_not_four_parts_is_refused(body):
    session = Session("k")
    with pytest.raises(ProtocolError, match="malformed envelope"):
        session.parse([DELIM, session.sign(body) + b"\n" + body])


def test_without_a_key_the_signature_is_empty_and_not_checked():
    _, frames = Session(b"").build("apply_request")
    assert frames[1].startswith(b"\n")
    assert Session(b"").parse(frames).msg_type == "apply_request"


@pytest.mark.parametrize("out, err", [("", ""), ("hello\n", ""), ('quotes " and \\ and \t, ünïcode ✓\x00', "warn\n")])
def test_an_engines_ok_reply_written_without_the_encoder_is_what_the_encoder_writes(out, err):
    from minipar.engine.execute import ok_apply_json
    md = {"started": 1765000000.123456, "completed": 1765000000.5, "stdout": out, "stderr": err, "status": "ok"}
    content, metadata = ok_apply_json(3, "0f1e2d3c-aaaa-bbbb-cccc-111122223333", md)
    assert json.loads(content) == {"status": "ok", "engine_info": {
        "engine_id": 3, "engine_uuid": "0f1e2d3c-aaaa-bbbb-cccc-111122223333", "method": "apply"}}
    assert metadata == json_bytes(dict(md, engine_id=3, engine_uuid="0f1e2d3c-aaaa-bbbb-cccc-111122223333"))
    sender, receiver = Session("k"), Session("k")
    _, frames = sender.build("apply_reply", content, b'{"msg_id":"p"}', metadata)
    msg = receiver.parse(frames)
    assert msg.metadata["stdout"] == out and msg.metadata["started"] == md["started"]
    assert msg.content["engine_info"]["engine_id"] == 3 and msg.parent == {"msg_id": "p"}


@pytest.mark.parametrize("parent, expected", [
    ({"msg_id": "abc-1", "msg_type": "apply_request"}, "abc-1"),
    ({"msg_id": 'quo"te\\d'}, 'quo"te\\d'),
    ({"msg_id": "ünï ✓"}, "ünï ✓"),
    ({"msg_type": "x", "msg_id": "second"}, "second"),
    ({"msg_id": 7}, 7),
    ({}, None),
])
def test_a_replys_parent_id_read_from_the_text_is_what_the_json_says(parent, expected):
    sender, receiver = Session("k"), Session("k")
    _, frames = sender.build("apply_reply", {"status": "ok"}, json_bytes(parent) if parent else None, {})
    msg = receiver.parse(frames)
    assert msg.parent_id == expected and msg.parent.get("msg_id") == expected


@pytest.mark.parametrize("content, expected", [
    ({"status": "ok", "engine_info": {"engine_id": 1}}, "ok"),
    ({"status": "error", "ename": "ValueError"}, "error"),
    ({"status": "o\\k"}, "o\\k"),
    ({"ename": "x", "status": "aborted"}, "aborted"),
    ({"status": None}, None),
    ({"statusx": "ok"}, None),
])
def test_a_replys_status_read_from_the_text_is_what_the_json_says(content, expected):
    sender, receiver = Session("k"), Session("k")
    _, frames = sender.build("apply_reply", json_bytes(content), None, {})
    msg = receiver.parse(frames)
    assert msg.status == expected and msg.content.get("status") == expected
