"""Malformed input a careless client or an attacker sends: a client error with a stable code,
never HTTP 500 or INTERNAL, and nothing half-written (the examples of the hardening issue)."""

import base64
import json

import pytest

from backend.chats.models import Chat, Message

from .conftest import error_codes

pytestmark = [pytest.mark.django_db(transaction=True)]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def post_raw(client, body: bytes, content_type="application/json"):
    return client.client.post("/graphql/", data=body, content_type=content_type)


@pytest.mark.parametrize("node_id", [b64("Document:abc"), b64("Chat:1.5"), b64("Chat:" + "9" * 5000),
                                     b64("Chat:-1"), b64("Chat:٣"), b64("Nope:1")])
def test_global_ids_that_cannot_be_ours(alice, node_id):
    result = alice("query($id: ID!) { node(id: $id) { id } chat(id: $id) { id } }", {"id": node_id})
    assert set(error_codes(result)) <= {"BAD_USER_INPUT", "NOT_FOUND"}, result
    assert (result.get("data") or {}).get("node") is None
    result = alice("mutation($id: ID!) { deleteChat(id: $id) { __typename } }", {"id": node_id})
    assert error_codes(result) in (["BAD_USER_INPUT"], ["NOT_FOUND"]), result


@pytest.mark.parametrize("args", ['first: -1', 'first: 100000', 'last: -1', 'after: "garbage"',
                                  f'after: "{b64("arrayconnection:99999999999999999999")}"',
                                  f'before: "{b64("somethingelse:3")}"'])
def test_paging_arguments_out_of_bounds(alice, args):
    result = alice(f"{{ chats({args}) {{ edges {{ node {{ id }} }} }} }}")
    assert error_codes(result) == ["BAD_USER_INPUT"], result
    result = alice(f"{{ documents({args}) {{ totalCount }} }}")
    assert error_codes(result) == ["BAD_USER_INPUT"], result


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb", "nul\x00byte"])
def test_text_that_is_not_storable_unicode(alice, text):
    body = json.dumps({"query": 'mutation($t: String!) { createChat(title: $t, model: "rag-faiss") { __typename } }',
                       "variables": {"t": text}})  # json.dumps escapes the lone surrogate as \\ud800
    response = post_raw(alice, body.encode())
    assert response.status_code == 200
    assert error_codes(response.json()) == ["BAD_USER_INPUT"], response.json()
    inline = json.dumps({"query": '{ chats(search: "%s") { totalCount } }' % text})
    assert error_codes(post_raw(alice, inline.encode()).json()) == ["BAD_USER_INPUT"]
    assert Chat.objects.count() == 0


@pytest.mark.parametrize("query", ['{ documents(titleContains: $p) { totalCount } }', '{ chats(search: $p) { totalCount } }',
                                   '{ recipes(text: $p) { totalCount } }'])
def test_a_huge_search_pattern_is_refused_before_any_like(alice, query):
    result = alice("query($p: String) " + query, {"p": "%_" * 25000})
    assert error_codes(result) == ["BAD_USER_INPUT"], result


def test_a_json_body_nested_deeper_than_any_client_sends(alice):
    deep = "[" * 1100 + "]" * 1100
    body = '{"query": "mutation($d: JSON!) { importChats(data: $d) { created } }", "variables": {"d": %s}}' % deep
    response = post_raw(alice, body.encode())
    assert response.status_code == 400
    assert "nested" in response.content.decode().lower()


@pytest.mark.parametrize("map_", ['{"0": "variables.file"}', '{"0": [1]}', '[1, 2]', '{"0": ["nowhere.at.all"]}',
                                  'not json'])
def test_multipart_maps_not_of_the_specs_shape(alice, map_):
    from django.core.files.uploadedfile import SimpleUploadedFile

    operations = json.dumps({"query": "mutation($file: Upload!) { uploadDocument(file: $file) { __typename } }",
                             "variables": {"file": None}})
    response = alice.client.post("/graphql/", data={"operations": operations, "map": map_,
                                                    "0": SimpleUploadedFile("a.txt", b"hello")})
    assert response.status_code == 400, response.content


def test_a_string_where_an_upload_is_expected(alice):
    for mutation in ("uploadDocument(file: $f) { __typename }", "uploadAvatar(file: $f) { __typename }"):
        result = alice(f"mutation($f: Upload!) {{ {mutation} }}", {"f": "not a file"})
        assert error_codes(result) == ["BAD_USER_INPUT"], result


def test_an_import_with_wrongly_typed_fields_is_refused_whole_and_export_still_works(alice):
    imported = [{"uid": "6f1a3c3e-1111-4111-8111-111111111111", "title": ["not", "text"], "model": 42,
                 "messages": [{"role": "user", "content": {"x": 1}}, {"role": "assistant", "content": 7,
                                                                       "sources": "nope", "rating": "five"}]}]
    result = alice("mutation($d: JSON!) { importChats(data: $d) { ... on ChatErrors { messages { code message } } } }",
                   {"d": imported})
    [problem] = result["data"]["importChats"]["messages"]
    assert problem["code"] == "INVALID_FORMAT" and "[0].title: must be text" in problem["message"], result
    assert Chat.objects.count() == 0 and Message.objects.count() == 0
    good = [{"title": "ok", "model": "rag-faiss", "messages": [{"role": "user", "content": "hi"}]}]
    assert alice("mutation($d: JSON!) { importChats(data: $d) { ... on ImportedChats { created } } }",
                 {"d": good})["data"]["importChats"]["created"] == 1
    chat_id = alice("{ chats { edges { node { id } } } }")["data"]["chats"]["edges"][0]["node"]["id"]
    assert "errors" not in alice("query($id: ID!) { exportChat(id: $id) }", {"id": chat_id})


@pytest.mark.parametrize("path", ["/media/avatars/%2e%2e", "/media/avatars/..%2f..%2fsettings.py",
                                  "/media/avatars/%00", "/media/avatars/" + "a" * 5000])
def test_media_paths_that_are_not_avatars(client, path):
    assert client.get(path).status_code == 404


# --- bombs: refused from their headers, before inflating or decoding ---------------------------------

def docx_bomb(megabytes: int) -> bytes:
    """A valid DOCX whose document.xml inflates to ``megabytes`` MB of XML whitespace (~1000:1)."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/'
                         'package/2006/content-types"/>')
        with archive.open("word/document.xml", "w", force_zip64=True) as part:
            part.write(b'<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/'
                       b'wordprocessingml/2006/main"><w:body>')
            chunk = b" " * (1024 * 1024)
            for _ in range(megabytes):
                part.write(chunk)
            part.write(b"</w:body></w:document>")
    return buffer.getvalue()


def test_a_docx_bomb_is_refused_at_upload(alice):
    from .test_documents import UPLOAD

    data = docx_bomb(300)
    assert len(data) < 2 * 1024 * 1024
    result = alice.upload(UPLOAD, {"file": None}, {"variables.file": ("report.docx", data, "application/octet-stream")})
    [message] = result["data"]["uploadDocument"]["messages"]
    assert message["code"] == "ARCHIVE_TOO_LARGE" and "zip bomb" in message["message"]


def test_a_pixel_bomb_is_refused_from_its_header(alice):
    import struct
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    side = 13000  # 169 megapixels, 1 bit each: a ~20 KB file
    rows = zlib.compress(b"".join(b"\x00" + b"\x00" * ((side + 7) // 8) for _ in range(side)), 9)
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
           + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    assert len(png) < 100_000
    result = alice.upload("mutation($file: Upload!) { uploadAvatar(file: $file) { ... on AccountErrors { "
                          "messages { code message } } } }", {"file": None},
                          {"variables.file": ("me.png", png, "image/png")})
    [message] = result["data"]["uploadAvatar"]["messages"]
    assert message["code"] == "IMAGE_TOO_LARGE" and "13000×13000" in message["message"]


def test_no_error_names_a_schema_member_it_guesses_at_in_production(alice, settings):
    typos = ['{ mee { id } }', '{ chats(firts: 1) { totalCount } }', '{ node(id: "x") { ... on Chatt { id } } }',
             'mutation { updatePreferences(preferences: {theme: DARKK}) { __typename } }',
             'mutation { updatePreferences(preferences: {themee: DARK}) { __typename } }']
    assert "Did you mean" in json.dumps(alice(typos[1]))  # development: help for the developer
    settings.GRAPHQL_INTROSPECTION = False
    for query in typos:
        result = alice(query)
        assert error_codes(result) and set(error_codes(result)) == {"BAD_USER_INPUT"}, result
        text = json.dumps(result)
        assert "Did you mean" not in text and "'first'" not in text and "'DARK'" not in text, text
