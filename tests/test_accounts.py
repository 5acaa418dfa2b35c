"""Accounts over the GraphQL HTTP endpoint: each operation, its success and its bad inputs."""

import io
import re
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone
from PIL import Image

from backend.users.models import ApiToken, User

from .conftest import PASSWORD, GraphQLClient, error_codes

pytestmark = pytest.mark.django_db(transaction=True)

USER_FIELDS = "id email username displayName bio isGuest emailVerified avatarUrl createdAt"
ERRORS = "... on AccountErrors { messages { field code message } }"

REGISTER = f"""mutation($email: String!, $password: String!, $username: String) {{
  register(email: $email, password: $password, username: $username) {{ ... on User {{ {USER_FIELDS} }} {ERRORS} }}
}}"""
LOGIN = f"""mutation($email: String!, $password: String!) {{
  login(email: $email, password: $password) {{ ... on User {{ {USER_FIELDS} }} {ERRORS} }}
}}"""
ME = f"""query {{ me {{ {USER_FIELDS} preferences {{ theme language timezone defaultModel
  ai {{ temperature maxTokens systemPrompt }} rag {{ generator }}
  privacy {{ chatHistoryRetentionDays }} }} }} }}"""
UPDATE_PREFS = f"""mutation($p: PreferencesInput!) {{
  updatePreferences(preferences: $p) {{ ... on User {{ preferences {{ theme timezone ai {{ temperature maxTokens }}
    privacy {{ chatHistoryRetentionDays }} }} }} {ERRORS} }}
}}"""
UPLOAD_AVATAR = f"mutation($file: Upload!) {{ uploadAvatar(file: $file) {{ ... on User {{ avatarUrl }} {ERRORS} }} }}"
CHANGE_PASSWORD = f"""mutation($c: String!, $n: String!) {{
  changePassword(currentPassword: $c, newPassword: $n) {{ ... on User {{ email }} {ERRORS} }} }}"""
RESET_REQUEST = "mutation($e: String!) { requestPasswordReset(email: $e) { ... on Ack { ok message } } }"
RESET = f"""mutation($u: String!, $t: String!, $n: String!) {{
  resetPassword(uid: $u, token: $t, newPassword: $n) {{ ... on User {{ email }} {ERRORS} }} }}"""
CREATE_TOKEN = f"""mutation($name: String!) {{ createApiToken(name: $name) {{
  ... on NewApiToken {{ secret token {{ id name prefix }} }} {ERRORS} }} }}"""
TOKENS = "query { apiTokens { totalCount edges { node { id name prefix lastUsedAt } } } }"
REVOKE = f"mutation($id: ID!) {{ revokeApiToken(id: $id) {{ ... on ApiToken {{ id revokedAt }} {ERRORS} }} }}"


def messages(result, name):
    return result["data"][name]["messages"]


def png_bytes(size=(800, 600), color=(200, 30, 30)):
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


# --- register, login, logout ----------------------------------------------------------------

def test_register_signs_in_and_me_returns_the_new_user(gql):
    result = gql(REGISTER, {"email": "New.Person@Example.com", "password": PASSWORD, "username": "newbie"})
    user = result["data"]["register"]
    assert user["email"] == "new.person@example.com"
    assert user["username"] == "newbie"
    assert user["emailVerified"] is False
    assert gql(ME)["data"]["me"]["email"] == "new.person@example.com"
    assert User.objects.filter(email="new.person@example.com").count() == 1
    # A verification email went out with a link to the frontend.
    assert len(mail.outbox) == 1 and "verify-email?uid=" in mail.outbox[0].body


@pytest.mark.parametrize("password", ["short", "12345678901", "password123"])
def test_register_rejects_weak_passwords(gql, password):
    result = gql(REGISTER, {"email": "weak@example.com", "password": password})
    msgs = messages(result, "register")
    assert msgs and all(m["field"] == "password" and m["code"] == "WEAK_PASSWORD" for m in msgs)
    assert not User.objects.filter(email="weak@example.com").exists()


def test_register_rejects_duplicate_email_in_any_case(gql, user):
    result = gql(REGISTER, {"email": "ALICE@example.com", "password": PASSWORD, "username": "other"})
    assert messages(result, "register") == [{"field": "email", "code": "EMAIL_TAKEN",
                                             "message": "An account with this email already exists."}]


def test_register_rejects_invalid_email_and_taken_username(gql, user):
    bad = gql(REGISTER, {"email": "not-an-email", "password": PASSWORD})
    assert messages(bad, "register")[0]["code"] == "INVALID_EMAIL"
    taken = gql(REGISTER, {"email": "x@example.com", "password": PASSWORD, "username": "Alice"})
    assert messages(taken, "register")[0] == {"field": "username", "code": "USERNAME_TAKEN",
                                              "message": "This username is taken."}


def test_login_sets_a_session_cookie_and_logout_ends_it(gql, user):
    result = gql(LOGIN, {"email": "Alice@Example.com", "password": PASSWORD})
    assert result["data"]["login"]["email"] == "alice@example.com"
    assert "sessionid" in gql.client.cookies
    assert gql(ME)["data"]["me"]["email"] == "alice@example.com"
    assert gql("mutation { logout }")["data"]["logout"] is True
    assert gql(ME)["data"]["me"] is None


def test_wrong_password_and_unknown_email_get_the_same_answer(gql, user):
    wrong = gql(LOGIN, {"email": "alice@example.com", "password": "nope nope nope"})
    unknown = gql(LOGIN, {"email": "nobody@example.com", "password": "nope nope nope"})
    assert messages(wrong, "login") == messages(unknown, "login") == [
        {"field": None, "code": "INVALID_CREDENTIALS", "message": "Invalid email or password."}]
    assert gql(ME)["data"]["me"] is None


def test_failed_logins_lock_out_the_account_from_that_address_only(gql, user, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(3):
        gql(LOGIN, {"email": "alice@example.com", "password": "wrong password!"})
    # Even the right password is refused from there now, and the answer says nothing about which part was wrong.
    result = gql(LOGIN, {"email": "alice@example.com", "password": PASSWORD})
    assert error_codes(result) == ["RATE_LIMITED"]
    assert "password" not in result["errors"][0]["message"].lower()
    # The owner, elsewhere, is not locked out of their own account by someone else's guesses.
    elsewhere = GraphQLClient(Client(REMOTE_ADDR="10.9.8.7"))
    assert elsewhere(LOGIN, {"email": "alice@example.com", "password": PASSWORD})["data"]["login"]["email"] == \
        "alice@example.com"
    # Another account from the same address is not locked out by alice's counter.
    other = User.objects.create_user(email="carol@example.com", username="carol", password=PASSWORD)
    assert gql(LOGIN, {"email": other.email, "password": PASSWORD})["data"]["login"]["email"] == other.email


def test_the_admin_login_is_under_the_same_protection(make_user, settings):
    settings.AXES_FAILURE_LIMIT = 3
    make_user("ops@example.com", is_staff=True, is_superuser=True)
    client = Client()
    for _ in range(2):
        page = client.post("/admin/login/", {"username": "ops@example.com", "password": "wrong password!"})
        assert page.status_code == 200  # the form again, with its error
    assert client.post("/admin/login/", {"username": "ops@example.com", "password": "wrong!"}).status_code == 429
    locked = client.post("/admin/login/", {"username": "ops@example.com", "password": PASSWORD})
    assert locked.status_code == 429
    assert Client(REMOTE_ADDR="10.1.2.3").post("/admin/login/", {"username": "ops@example.com",
                                                                 "password": PASSWORD}).status_code == 302


def test_failed_logins_are_rate_limited_per_client_address(gql, make_user, settings):
    settings.LOGIN_RATE_LIMIT_PER_ADDRESS = 4
    users = [make_user() for _ in range(6)]
    colleague = users[5]  # signed in from this address (the office's proxy) before
    assert gql(LOGIN, {"email": colleague.email, "password": PASSWORD})["data"]["login"]
    for u in users[:4]:
        gql(LOGIN, {"email": u.email, "password": "wrong password!"})
    assert error_codes(gql(LOGIN, {"email": users[4].email, "password": PASSWORD})) == ["RATE_LIMITED"]
    # Someone who signed in from here before is not locked out by the others' failures.
    assert gql(LOGIN, {"email": colleague.email, "password": PASSWORD})["data"]["login"]["email"] == colleague.email
    # A client at another address still gets in.
    other = GraphQLClient(Client(REMOTE_ADDR="10.9.8.7"))
    assert other(LOGIN, {"email": users[4].email, "password": PASSWORD})["data"]["login"]["email"] == users[4].email


def test_csrf_applies_to_session_authenticated_mutations(user):
    client = Client(enforce_csrf_checks=True)
    gql = GraphQLClient(client)
    # A GET query is allowed without a token and hands out the csrftoken cookie.
    response = client.get("/graphql/", {"query": "{ me { email } }"}, headers={"Accept": "application/json"})
    assert response.status_code == 200 and response.json() == {"data": {"me": None}}
    token = client.cookies["csrftoken"].value
    assert gql.raw(LOGIN, {"email": user.email, "password": PASSWORD}).status_code == 403
    ok = gql(LOGIN, {"email": user.email, "password": PASSWORD}, headers={"X-CSRFToken": token})
    assert ok["data"]["login"]["email"] == user.email


def test_mutations_are_refused_over_get(alice):
    response = alice.client.get("/graphql/", {"query": "mutation { logout }"}, headers={"Accept": "application/json"})
    assert response.status_code in (400, 405)
    assert alice(ME)["data"]["me"]["email"] == "alice@example.com"


# --- profile, preferences, avatar ---------------------------------------------------------

def test_update_profile(alice, bob):
    result = alice("""mutation { updateProfile(displayName: "Alice A.", bio: "Hi", username: "alice2") {
      ... on User { displayName bio username } } }""")
    assert result["data"]["updateProfile"] == {"displayName": "Alice A.", "bio": "Hi", "username": "alice2"}
    taken = alice(f'mutation {{ updateProfile(username: "bob") {{ {ERRORS} }} }}')
    assert messages(taken, "updateProfile")[0]["code"] == "USERNAME_TAKEN"


def test_an_email_change_needs_the_password_and_the_new_address(alice, make_user):
    User.objects.filter(pk=alice.user.pk).update(email_verified_at=timezone.now())
    change = ('mutation($p: String) { updateProfile(email: "alice@new.example", currentPassword: $p) '
              f'{{ ... on User {{ email emailVerified pendingEmail }} {ERRORS} }} }}')
    # A stolen session alone cannot take the account: the password is asked.
    assert messages(alice(change), "updateProfile")[0]["code"] == "WRONG_PASSWORD"
    assert messages(alice(change, {"p": "a guess"}), "updateProfile")[0]["code"] == "WRONG_PASSWORD"
    mail.outbox.clear()
    result = alice(change, {"p": PASSWORD})["data"]["updateProfile"]
    # Nothing changes until the new address confirms; the old one is told.
    assert result == {"email": "alice@example.com", "emailVerified": True, "pendingEmail": "alice@new.example"}
    to_new, notice = sorted(mail.outbox, key=lambda m: m.to[0] != "alice@new.example")
    assert to_new.to == ["alice@new.example"] and notice.to == ["alice@example.com"]
    assert "alice@new.example" in notice.body
    uid, token = _reset_link(to_new.body)
    verify = f'mutation($u: String!, $t: String!) {{ verifyEmail(uid: $u, token: $t) {{ ... on User {{ email emailVerified pendingEmail }} {ERRORS} }} }}'
    assert alice(verify, {"u": uid, "t": token})["data"]["verifyEmail"] == {
        "email": "alice@new.example", "emailVerified": True, "pendingEmail": ""}
    # Signing in now takes the new address.
    assert GraphQLClient()(LOGIN, {"email": "alice@new.example", "password": PASSWORD})["data"]["login"]


def test_preferences_have_defaults_and_update_partially(alice):
    prefs = alice(ME)["data"]["me"]["preferences"]
    assert prefs["theme"] == "SYSTEM" and prefs["ai"]["temperature"] == 0.7
    result = alice(UPDATE_PREFS, {"p": {"theme": "DARK", "ai": {"temperature": 0.2}}})
    assert result["data"]["updatePreferences"]["preferences"]["theme"] == "DARK"
    again = alice(UPDATE_PREFS, {"p": {"privacy": {"chatHistoryRetentionDays": 30}}})["data"]["updatePreferences"]
    # Earlier changes stay; untouched keys keep their defaults.
    assert again["preferences"] == {"theme": "DARK", "timezone": "UTC", "ai": {"temperature": 0.2, "maxTokens": 1024},
                                    "privacy": {"chatHistoryRetentionDays": 30}}


def test_malformed_preferences_are_field_errors(alice):
    result = alice(UPDATE_PREFS, {"p": {"timezone": "Mars/Olympus", "ai": {"temperature": 7},
                                        "defaultModel": "gpt-9", "rag": {"generator": "gpt-9"}}})
    got = {(m["field"], m["code"]) for m in messages(result, "updatePreferences")}
    assert got == {("preferences.timezone", "INVALID_TIMEZONE"), ("preferences.ai.temperature", "OUT_OF_RANGE"),
                   ("preferences.defaultModel", "INVALID_CHOICE"), ("preferences.rag.generator", "INVALID_CHOICE")}
    # Nothing was saved.
    assert alice(ME)["data"]["me"]["preferences"]["timezone"] == "UTC"
    # A wrong type never reaches the service: GraphQL refuses it.
    wrong_type = alice(UPDATE_PREFS, {"p": {"ai": {"maxTokens": "lots"}}})
    assert error_codes(wrong_type) == ["BAD_USER_INPUT"]


def test_unknown_keys_and_wrong_types_in_imported_preferences_are_field_errors():
    from django.core.exceptions import ValidationError

    from backend.users.preferences import validate_patch

    with pytest.raises(ValidationError) as exc:
        validate_patch({"colour": "red", "ai": {"max_tokens": "many"}, "privacy": {"chat_history_retention_days": "1"},
                        "notifications": {"email": True}})
    codes = {k: [e.code for e in v] for k, v in exc.value.error_dict.items()}
    assert codes == {"preferences.colour": ["UNKNOWN_KEY"], "preferences.ai.max_tokens": ["WRONG_TYPE"],
                     "preferences.privacy.chat_history_retention_days": ["WRONG_TYPE"],
                     "preferences.notifications": ["UNKNOWN_KEY"]}


def test_upload_avatar_resizes_and_replaces_the_old_file(alice, settings):
    first = alice.upload(UPLOAD_AVATAR, {"file": None}, {"variables.file": ("me.png", png_bytes(), "image/png")})
    url = first["data"]["uploadAvatar"]["avatarUrl"]
    assert url.startswith("http://testserver/media/avatars/") and url.endswith(".png")  # absolute, for any client
    response = alice.client.get(url)
    image = Image.open(io.BytesIO(b"".join(response.streaming_content)))
    assert image.size == (settings.AVATAR_SIZE, settings.AVATAR_SIZE)
    old_path = User.objects.get(pk=alice.user.pk).avatar.path
    alice.upload(UPLOAD_AVATAR, {"file": None}, {"variables.file": ("new.png", png_bytes(color=(0, 0, 255)), "image/png")})
    import os
    assert not os.path.exists(old_path)


def test_avatar_must_be_an_image_by_content_and_not_too_large(alice, settings):
    fake = alice.upload(UPLOAD_AVATAR, {"file": None},
                        {"variables.file": ("evil.png", b"<html><script>alert(1)</script></html>", "image/png")})
    assert messages(fake, "uploadAvatar")[0]["code"] == "NOT_AN_IMAGE"
    settings.AVATAR_MAX_BYTES = 1000
    big = alice.upload(UPLOAD_AVATAR, {"file": None}, {"variables.file": ("big.png", png_bytes((900, 900)) + b"\0" * 2000, "image/png")})
    assert messages(big, "uploadAvatar")[0] == {"field": "file", "code": "FILE_TOO_LARGE",
                                                "message": "The image is larger than 0 KB."}
    assert User.objects.get(pk=alice.user.pk).avatar == ""


# --- passwords ------------------------------------------------------------------------------

def test_change_password(alice):
    wrong = alice(CHANGE_PASSWORD, {"c": "not my password", "n": "a brand new passphrase"})
    assert messages(wrong, "changePassword")[0]["code"] == "WRONG_PASSWORD"
    weak = alice(CHANGE_PASSWORD, {"c": PASSWORD, "n": "123"})
    assert {m["field"] for m in messages(weak, "changePassword")} == {"newPassword"}
    ok = alice(CHANGE_PASSWORD, {"c": PASSWORD, "n": "a brand new passphrase"})
    assert ok["data"]["changePassword"]["email"] == "alice@example.com"
    assert alice(ME)["data"]["me"] is not None  # this session survives
    assert User.objects.get(pk=alice.user.pk).check_password("a brand new passphrase")


def _reset_link(body):
    return re.search(r"uid: (\S+)\ntoken: (\S+)", body).groups()


def test_password_reset_answers_the_same_whether_or_not_the_account_exists(gql, user):
    known = gql(RESET_REQUEST, {"e": "alice@example.com"})
    unknown = gql(RESET_REQUEST, {"e": "ghost@example.com"})
    assert known == unknown
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["alice@example.com"]


def test_password_reset_token_works_once(gql, user):
    gql(RESET_REQUEST, {"e": "alice@example.com"})
    uid, token = _reset_link(mail.outbox[0].body)
    ok = gql(RESET, {"u": uid, "t": token, "n": "another fine passphrase"})
    assert ok["data"]["resetPassword"]["email"] == "alice@example.com"
    reused = gql(RESET, {"u": uid, "t": token, "n": "yet another passphrase"})
    assert messages(reused, "resetPassword")[0]["code"] == "INVALID_TOKEN"
    assert gql(LOGIN, {"email": "alice@example.com", "password": "another fine passphrase"})["data"]["login"]["email"]


def test_expired_reset_token_is_refused(gql, user, settings):
    gql(RESET_REQUEST, {"e": "alice@example.com"})
    uid, token = _reset_link(mail.outbox[0].body)
    settings.PASSWORD_RESET_TIMEOUT = -1
    result = gql(RESET, {"u": uid, "t": token, "n": "another fine passphrase"})
    assert messages(result, "resetPassword")[0] == {
        "field": "token", "code": "INVALID_TOKEN",
        "message": "This reset link is invalid or has expired. Ask for a new one."}
    assert User.objects.get(pk=user.pk).check_password(PASSWORD)


def test_email_verification(alice):
    sent = alice("mutation { requestEmailVerification { ... on Ack { ok } } }")
    assert sent["data"]["requestEmailVerification"]["ok"] is True
    uid, token = _reset_link(mail.outbox[-1].body)
    verify = f'mutation($u: String!, $t: String!) {{ verifyEmail(uid: $u, token: $t) {{ ... on User {{ emailVerified }} {ERRORS} }} }}'
    assert alice(verify, {"u": uid, "t": token})["data"]["verifyEmail"]["emailVerified"] is True
    assert messages(alice(verify, {"u": uid, "t": token}), "verifyEmail")[0]["code"] == "INVALID_TOKEN"
    again = alice(f"mutation {{ requestEmailVerification {{ {ERRORS} }} }}")
    assert messages(again, "requestEmailVerification")[0]["code"] == "ALREADY_VERIFIED"


# --- API tokens -----------------------------------------------------------------------------

def test_api_token_lifecycle(alice):
    created = alice(CREATE_TOKEN, {"name": "laptop"})["data"]["createApiToken"]
    secret = created["secret"]
    assert secret.startswith(created["token"]["prefix"]) and len(secret) > 40
    token_row = ApiToken.objects.get()
    assert secret not in (token_row.token_hash, token_row.prefix) and token_row.token_hash == ApiToken.hash_secret(secret)

    bearer = GraphQLClient(token=secret)
    assert bearer(ME)["data"]["me"]["email"] == "alice@example.com"
    listed = alice(TOKENS)["data"]["apiTokens"]
    assert listed["totalCount"] == 1 and listed["edges"][0]["node"]["name"] == "laptop"
    # The secret is never shown again.
    assert secret not in str(listed)
    assert listed["edges"][0]["node"]["lastUsedAt"] is not None
    # Used again at once (last use not rewritten), and after a while (rewritten).
    first_use = ApiToken.objects.get().last_used_at
    assert bearer(ME)["data"]["me"]["email"] == "alice@example.com"
    assert ApiToken.objects.get().last_used_at == first_use
    ApiToken.objects.update(last_used_at=first_use - timedelta(minutes=5))
    assert bearer(ME)["data"]["me"]["email"] == "alice@example.com"
    assert ApiToken.objects.get().last_used_at > first_use

    revoked = alice(REVOKE, {"id": created["token"]["id"]})["data"]["revokeApiToken"]
    assert revoked["revokedAt"] is not None
    assert bearer(ME)["data"]["me"] is None
    assert error_codes(bearer(TOKENS)) == ["UNAUTHENTICATED"]
    assert alice(TOKENS)["data"]["apiTokens"]["totalCount"] == 0


def test_bearer_requests_skip_csrf_and_ignore_the_session(user, make_user):
    from backend.users.credentials import create_api_token

    _, secret = create_api_token(user, name="ci")
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("mallory@example.com"))
    gql = GraphQLClient(client, token=secret)
    assert gql('mutation { updateProfile(bio: "via token") { ... on User { email bio } } }')["data"]["updateProfile"] == {
        "email": "alice@example.com", "bio": "via token"}
    bad = GraphQLClient(Client(enforce_csrf_checks=True), token="cbk_not-a-real-token")
    assert error_codes(bad('mutation { updateProfile(bio: "x") { ... on User { bio } } }')) == ["UNAUTHENTICATED"]


def test_token_name_is_required(alice):
    result = alice(CREATE_TOKEN, {"name": "  "})
    assert messages(result, "createApiToken")[0] == {"field": "name", "code": "REQUIRED",
                                                     "message": "Give the token a name."}


def test_expired_token_is_refused(user):
    from backend.users.credentials import create_api_token

    token, secret = create_api_token(user, name="old", expires_in_days=1)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert GraphQLClient(token=secret)(ME)["data"]["me"] is None


# --- guests ---------------------------------------------------------------------------------

def test_guest_session_can_be_claimed_keeping_the_account(gql):
    guest = gql(f"mutation {{ startGuestSession {{ ... on User {{ id isGuest username }} }} }}")["data"]["startGuestSession"]
    assert guest["isGuest"] is True
    gql(UPDATE_PREFS, {"p": {"theme": "DARK"}})
    claim = f"""mutation {{ claimGuestAccount(email: "real@example.com", password: "{PASSWORD}") {{
      ... on User {{ id email isGuest preferences {{ theme }} }} {ERRORS} }} }}"""
    claimed = gql(claim)["data"]["claimGuestAccount"]
    assert claimed == {"id": guest["id"], "email": "real@example.com", "isGuest": False, "preferences": {"theme": "DARK"}}
    assert messages(gql(claim), "claimGuestAccount")[0]["code"] == "NOT_A_GUEST"
    assert GraphQLClient()(LOGIN, {"email": "real@example.com", "password": PASSWORD})["data"]["login"]["email"]


def test_expired_guests_are_purged_by_the_command(db):
    from django.core.management import call_command

    from backend.users.guests import start_guest_session

    fresh, stale = start_guest_session(), start_guest_session()
    User.objects.filter(pk=stale.pk).update(guest_expires_at=timezone.now() - timedelta(minutes=1))
    out = io.StringIO()
    call_command("purge_guests", stdout=out)
    assert "purged 1" in out.getvalue()
    assert list(User.objects.filter(is_guest=True)) == [fresh]


# --- deletion, export, import ---------------------------------------------------------------

def test_delete_account_needs_the_password_and_removes_files(alice):
    import os

    alice.upload(UPLOAD_AVATAR, {"file": None}, {"variables.file": ("me.png", png_bytes(), "image/png")})
    avatar_path = User.objects.get(pk=alice.user.pk).avatar.path
    alice(CREATE_TOKEN, {"name": "t"})
    wrong = alice(f'mutation {{ deleteAccount(password: "nope") {{ {ERRORS} }} }}')
    assert messages(wrong, "deleteAccount")[0]["code"] == "WRONG_PASSWORD"
    done = alice(f'mutation {{ deleteAccount(password: "{PASSWORD}") {{ ... on Ack {{ ok }} }} }}')
    assert done["data"]["deleteAccount"]["ok"] is True
    assert not User.objects.filter(pk=alice.user.pk).exists() and not ApiToken.objects.exists()
    assert not os.path.exists(avatar_path)
    assert alice(ME)["data"]["me"] is None


def test_export_then_import_twice_is_idempotent(alice, bob):
    alice(UPDATE_PREFS, {"p": {"theme": "LIGHT", "ai": {"maxTokens": 2048}}})
    alice('mutation { updateProfile(displayName: "Alice", bio: "Reads papers") { ... on User { id } } }')
    exported = alice("query { exportMyData }")["data"]["exportMyData"]
    assert exported["profile"]["email"] == "alice@example.com"
    assert exported["profile"]["preferences"]["ai"]["max_tokens"] == 2048
    imp = f"mutation($d: JSON!) {{ importMyData(data: $d) {{ ... on ImportResult {{ profileUpdated }} {ERRORS} }} }}"
    for _ in range(2):
        assert bob(imp, {"d": exported})["data"]["importMyData"]["profileUpdated"] is True
    me = bob(ME)["data"]["me"]
    assert me["email"] == "bob@example.com"  # identity is not imported
    assert me["displayName"] == "Alice" and me["preferences"]["ai"]["maxTokens"] == 2048
    assert User.objects.count() == 2
    bad = bob(imp, {"d": {"format": "something else"}})
    assert messages(bad, "importMyData")[0]["code"] == "INVALID_FORMAT"
    bad_prefs = bob(imp, {"d": {**exported, "profile": {**exported["profile"], "preferences": {"theme": 3}}}})
    assert messages(bad_prefs, "importMyData")[0] == {"field": "preferences.theme",
                                                      "code": "WRONG_TYPE", "message": "Must be of type str."}


# --- errors and limits ----------------------------------------------------------------------

def test_unauthenticated_calls_get_a_code(gql):
    assert error_codes(gql("query { exportMyData }")) == ["UNAUTHENTICATED"]
    assert error_codes(gql('mutation { updateProfile(bio: "x") { ... on User { bio } } }')) == ["UNAUTHENTICATED"]


def test_one_user_never_sees_anothers_objects_by_global_id(alice, bob):
    bob_id = bob(ME)["data"]["me"]["id"]
    token_id = bob(CREATE_TOKEN, {"name": "bob's"})["data"]["createApiToken"]["token"]["id"]
    assert alice("query($id: ID!) { node(id: $id) { id } }", {"id": bob_id})["data"]["node"] is None
    assert alice("query($id: ID!) { node(id: $id) { id } }", {"id": token_id})["data"]["node"] is None
    assert error_codes(alice(REVOKE, {"id": token_id})) == ["NOT_FOUND"]
    assert ApiToken.objects.get().revoked_at is None
    assert bob("query($id: ID!) { node(id: $id) { ... on ApiToken { name } } }", {"id": token_id})["data"]["node"] == {"name": "bob's"}


def test_alias_and_token_limits_hold(alice):
    aliases = "query { " + " ".join(f"a{i}: me {{ id }}" for i in range(40)) + " }"
    assert error_codes(alice(aliases)) == ["BAD_USER_INPUT"]
    tokens = "query { me { " + " ".join(["id"] * 2100) + " } }"
    assert error_codes(alice(tokens)) == ["BAD_USER_INPUT"]
    assert "errors" not in alice("query { " + " ".join(f"a{i}: me {{ id }}" for i in range(5)) + " }")


def test_depth_limit_holds(alice, settings):
    deep = "query { apiTokens { edges { node { name } } } }"
    assert "errors" not in alice(deep)
    settings.GRAPHQL_MAX_DEPTH = 2
    result = alice(deep)
    assert error_codes(result) == ["BAD_USER_INPUT"]
    assert "exceeds maximum operation depth" in result["errors"][0]["message"]


def test_a_query_text_is_validated_once_under_the_same_limits(alice, settings, monkeypatch):
    import strawberry.schema.schema as strawberry_schema

    calls = []
    real = strawberry_schema.validate_document
    monkeypatch.setattr(strawberry_schema, "validate_document", lambda *args: calls.append(1) or real(*args))
    query = "query ValidatedOnce { me { id email } apiTokens { edges { node { name } } } }"
    for _ in range(3):
        assert "errors" not in alice(query)
    assert len(calls) == 1
    invalid = "query ValidatedOnceInvalid { me { nosuchfield } }"
    for _ in range(2):
        assert error_codes(alice(invalid)) == ["BAD_USER_INPUT"]
    assert len(calls) == 3  # a failing text is validated each time, and never remembered
    default = settings.GRAPHQL_MAX_DEPTH
    settings.GRAPHQL_MAX_DEPTH = 2  # other limits: other rules, validated afresh
    assert "exceeds maximum operation depth" in alice(query)["errors"][0]["message"]
    assert len(calls) == 4
    settings.GRAPHQL_MAX_DEPTH = default  # the text already passed under these rules
    assert "errors" not in alice(query) and len(calls) == 4


def test_a_query_text_is_parsed_once_and_a_broken_one_still_gets_its_code(alice):
    from backend.schema.validation import ParseOnce

    cache = ParseOnce().cached_parse_document
    query = "query ParsedOnce { me { id } }"
    assert "errors" not in alice(query)
    before = cache.cache_info()
    for _ in range(3):
        assert alice(query)["data"]["me"]["id"]
    after = cache.cache_info()
    assert after.hits - before.hits == 3 and after.misses == before.misses
    for _ in range(2):  # a syntax error is reported each time, never cached
        assert error_codes(alice("query Broken { me { id }")) == ["BAD_USER_INPUT"]


def test_field_suggestions_are_off(alice):
    result = alice("query { me { emial } }")
    assert error_codes(result) == ["BAD_USER_INPUT"]
    assert "Did you mean" not in result["errors"][0]["message"]


def test_unexpected_errors_are_masked(alice, monkeypatch):
    from backend.users import portability

    def boom(user):
        raise RuntimeError("secret database detail")

    monkeypatch.setattr(portability, "export_data", boom)
    result = alice("query { exportMyData }")
    assert result["errors"][0]["message"] == "Unexpected error."
    assert error_codes(result) == ["INTERNAL"]
    assert "secret" not in str(result)
