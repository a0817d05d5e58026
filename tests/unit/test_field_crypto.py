"""Keys for patient contacts: parsing, development key files, rotation and lookup hashes."""

from __future__ import annotations

import hmac
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr

from campaigns.field_crypto import GCM_PREFIX, FieldKeyError, FieldKeys, new_keys
from config.settings import Settings, SettingsError, load_settings


def _keys(*data: str, lookup: str = "l" * 40) -> FieldKeys:
    return FieldKeys.parse(",".join(data), lookup)


def test_values_round_trip_and_tokens_never_repeat() -> None:
    keys = _keys(Fernet.generate_key().decode())
    first, second = keys.encrypt("+16502530001"), keys.encrypt("+16502530001")
    assert first != second, "randomised: equal phones must not look equal at rest"
    assert first.startswith(GCM_PREFIX) and "6502530001" not in first
    assert keys.decrypt(first) == keys.decrypt(second) == "+16502530001"


def test_a_wrong_key_is_a_clear_error_not_garbage() -> None:
    token = _keys(Fernet.generate_key().decode()).encrypt("sam@example.org")
    with pytest.raises(FieldKeyError, match="CAMPAIGNS_DATA_KEYS"):
        _keys(Fernet.generate_key().decode()).decrypt(token)


def test_rotation_reads_old_tokens_and_writes_with_the_newest_key() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = _keys(old).encrypt("+16502530001")
    rotating = _keys(new, old)
    assert rotating.decrypt(token) == "+16502530001"
    rotated = rotating.rotate(token)
    assert _keys(new).decrypt(rotated) == "+16502530001"
    with pytest.raises(FieldKeyError):
        _keys(old).decrypt(rotated)


def test_tokens_written_with_fernet_before_gcm_still_read_and_rotate_to_gcm() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    legacy = Fernet(old.encode()).encrypt(b"+16502530001").decode()
    assert _keys(old).decrypt(legacy) == "+16502530001"
    rotating = _keys(new, old)
    assert rotating.decrypt(legacy) == "+16502530001"
    rotated = rotating.rotate(legacy)
    assert rotated.startswith(GCM_PREFIX)
    assert _keys(new).decrypt(rotated) == "+16502530001"


def test_a_gcm_token_is_never_read_from_an_unrelated_fernet_key_of_the_same_bytes() -> None:
    """GCM runs under a key derived from the configured one, not the same bytes."""
    data = Fernet.generate_key().decode()
    token = _keys(data).encrypt("+16502530001")
    with pytest.raises(InvalidToken):
        Fernet(data.encode()).decrypt(token.encode())


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-2] + ("A" if t[-2] != "A" else "B") + t[-1],  # a changed tag byte
        lambda t: t[:10] + ("A" if t[10] != "A" else "B") + t[11:],  # a changed nonce byte
        lambda t: t.removeprefix(GCM_PREFIX),  # the mark stripped: read as Fernet, refused
        lambda t: t[: len(GCM_PREFIX) + 8],  # cut short
        lambda t: t + "!",  # not base64
        lambda t: t + "é",  # not ASCII
    ],
)
def test_a_damaged_token_is_a_clear_error_not_garbage(tamper: Callable[[str], str]) -> None:
    keys = _keys(Fernet.generate_key().decode())
    token = keys.encrypt("sam@example.org")
    with pytest.raises(FieldKeyError, match="CAMPAIGNS_DATA_KEYS"):
        keys.decrypt(tamper(token))
    with pytest.raises(FieldKeyError, match="not readable"):
        keys.rotate(tamper(token))


@pytest.mark.parametrize(
    ("data", "lookup", "needle"),
    [
        ("not-a-key", "l" * 40, "DATA_KEYS"),
        ("", "l" * 40, "DATA_KEYS"),
        (Fernet.generate_key().decode(), "short", "LOOKUP_KEY"),
        (Fernet.generate_key().decode(), "l" * 40 + ",short", "LOOKUP_KEY"),
    ],
)
def test_malformed_keys_name_the_variable(data: str, lookup: str, needle: str) -> None:
    with pytest.raises(FieldKeyError, match=needle):
        FieldKeys.parse(data, lookup)


def test_lookup_hashes_are_keyed_normalised_and_separate_phone_from_email() -> None:
    data = Fernet.generate_key().decode()
    a, b = _keys(data, lookup="a" * 40), _keys(data, lookup="b" * 40)
    assert a.lookup_hash("email", " Sam@Example.org ") == a.lookup_hash("email", "sam@example.org")
    assert a.lookup_hash("phone", "+16502530001") != b.lookup_hash("phone", "+16502530001")
    assert a.lookup_hash("phone", "x") != a.lookup_hash("email", "x")
    assert len(a.lookup_hash("phone", "+16502530001")) == 64


def test_lookup_hashes_are_hmac_sha256_of_kind_and_value_whatever_came_before() -> None:
    """Stored rows hold these hashes: how they are computed must never change them."""
    keys = _keys(Fernet.generate_key().decode(), lookup="k" * 40)
    key = keys.lookups[0]
    for kind, value, message in (("phone", "+16502530001", b"phone:+16502530001"),
                                 ("email", " Sam@Example.org", b"email:sam@example.org"),
                                 ("phone", "+16502530001", b"phone:+16502530001")):  # fmt: skip
        assert keys.lookup_hash(kind, value) == hmac.new(key, message, "sha256").hexdigest()


def test_development_keys_are_made_once_private_and_stable(tmp_path: Path) -> None:
    settings = Settings(environment="development", data_dir=tmp_path, data_keys=None,
                        lookup_key=None)  # fmt: skip
    first = FieldKeys.from_settings(settings)
    second = FieldKeys.from_settings(settings)
    key_file = tmp_path / ".field_keys"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert second.decrypt(first.encrypt("+16502530001")) == "+16502530001"
    assert first.lookup_hash("phone", "+1") == second.lookup_hash("phone", "+1")


def test_environment_keys_win_over_the_development_file(tmp_path: Path) -> None:
    pair = new_keys()
    settings = Settings(data_dir=tmp_path, data_keys=SecretStr(pair["data"]),
                        lookup_key=SecretStr(pair["lookup"]))  # fmt: skip
    keys = FieldKeys.from_settings(settings)
    assert not (tmp_path / ".field_keys").exists()
    assert FieldKeys.parse(pair["data"], pair["lookup"]).decrypt(keys.encrypt("x")) == "x"


def test_production_refuses_to_start_without_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGNS_ENVIRONMENT", "production")
    monkeypatch.setenv("CAMPAIGNS_SECRET_KEY", "p" * 40)
    monkeypatch.delenv("CAMPAIGNS_DATA_KEYS", raising=False)
    monkeypatch.delenv("CAMPAIGNS_LOOKUP_KEY", raising=False)
    with pytest.raises(SettingsError, match="CAMPAIGNS_DATA_KEYS and CAMPAIGNS_LOOKUP_KEY"):
        load_settings()


def test_hashes_are_written_with_the_newest_lookup_key_and_found_under_any() -> None:
    data = Fernet.generate_key().decode()
    old = FieldKeys.parse(data, "o" * 40)
    rotating = FieldKeys.parse(data, f"{'n' * 40},{'o' * 40}")
    new = FieldKeys.parse(data, "n" * 40)
    phone = "+16505551234"
    assert rotating.lookup_hash("phone", phone) == new.lookup_hash("phone", phone)
    assert rotating.retired_hashes("phone", phone) == [old.lookup_hash("phone", phone)]
    assert new.retired_hashes("phone", phone) == [], "no extra HMACs outside a rotation"
